"""learn2learn's core surface on meta-dist: `from meta_dist.compat import l2l` for `import learn2learn as l2l`.

Covered: `l2l.algorithms` (MAML, MetaSGD), `l2l.data` (MetaDataset, FilteredMetaDataset,
UnionMetaDataset, Taskset/TaskDataset, partition_task and the task transforms NWays, KShots,
LoadData, FilterLabels, RemapLabels, ConsecutiveLabels, FusedNWaysKShots) and `l2l.utils`
(clone_module, update_module, detach_module, clone_parameters, magic_box, accuracy, also at the top
level as in learn2learn), and from `l2l.vision` FullOmniglot, OmniglotCNN, OmniglotFC and
RandomClassRotation. `l2l.bridge` hands a taskset and a MAML model to meta-dist's trainer.

One deliberate difference: learn2learn samples tasks from Python's global `random`, so each process
sees different tasks. Here every random choice of task i comes from a `random.Random` seeded by
`derive_seed` of the taskset's `seed` (a constructor keyword, default 0), the task index (or the
number of the draw, for `sample()` and endless tasksets) and the transform's position: `Taskset(...,
seed=s)[i]` is the same task in every process and on every machine, and the global `random` state
is never read or changed (see `l2l.data.task_dataset`).
"""
from meta_dist.compat.l2l import algorithms, bridge, data, utils, vision
from meta_dist.compat.l2l.utils import (accuracy, clone_module, clone_parameters, detach_module, magic_box,
                                        update_module)

__all__ = ["accuracy", "algorithms", "bridge", "clone_module", "clone_parameters", "data", "detach_module",
           "magic_box", "update_module", "utils", "vision"]
