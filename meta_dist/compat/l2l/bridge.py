"""The bridge from learn2learn-style tasksets and models to meta-dist's distributed trainer.

`TasksetFamily` is a `meta_dist.tasks.spec.TaskFamily` over a `Taskset`: on the driver, `spec` runs
the taskset's transforms seeded from (seed, split, step, index) only and keeps the outcome as a small
spec (the chosen dataset indices, class-major, and their labels); on a worker, `materialize` loads
those indices from the dataset and splits each class into support and query. So a worker never
re-runs the sampling and every worker agrees on every task. The trade-off: the spec records
indices and labels, not per-item transforms, so only LoadData and RemapLabels may act on items
(data augmentation belongs in the dataset's own `transform`); `spec` says so if another does.

`model_factory` turns a user's `l2l.algorithms.MAML` (or a bare module) into the picklable
`factory(input_shape, output_dim, **kwargs)` meta-dist builds networks with, carrying the wrapper's
step size and order so they can be mapped onto meta-dist's config.
"""
from __future__ import annotations

import copy
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from meta_dist.compat.l2l.algorithms import MAML, MetaSGD
from meta_dist.compat.l2l.data.task_dataset import Taskset, transform_list
from meta_dist.compat.l2l.data.transforms import FusedNWaysKShots, KShots, NWays, item_label, ordered_labels
from meta_dist.errors import UserError
from meta_dist.tasks.spec import TaskBatch, TaskFamily, TaskSpec, spec_rng

_WAYS = (NWays, FusedNWaysKShots)
_SHOTS = (KShots, FusedNWaysKShots)


def _per_class(transforms: list) -> int | None:
    """Items per class the pipeline keeps (its last KShots-like transform), if it says."""
    counts = [t.k for t in transforms if isinstance(t, _SHOTS)]
    return counts[-1] if counts else None


def _input(item) -> torch.Tensor:
    """The input tensor of a dataset item (data, label, ...)."""
    x = item[0]
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    raise UserError(f"dataset items must hold tensors (or numpy arrays), got {type(x).__name__}; give the "
                    f"dataset a transform that makes tensors, e.g. torchvision.transforms.ToTensor()")


class TasksetFamily(TaskFamily):
    """Episodic classification tasks from a learn2learn-style `Taskset` (or `dataset, task_transforms`).

    Each task's items are grouped by label; per class, the first `shots` items are the support set
    and the rest the query set (default: half of the items per class, as learn2learn's Omniglot
    example samples 2k per class and splits them evenly). Labels are the taskset's (after
    RemapLabels); a task whose labels are not 0..ways-1 (no RemapLabels) is labelled by rank.
    Every class of a task must keep the same number of items (KShots does that).

    `splits` maps split names ("train", "val", "test") to tasksets, so evaluation can draw from
    held-out classes; without it, every split draws from the same taskset, so evaluation tasks
    come from the training classes (only the seeds differ). `ways`/`shots`/`num_query` overrides
    in `spec` resize copies of the pipeline's NWays and KShots (FusedNWaysKShots) transforms.
    """

    name = "l2l_taskset"
    metric = "accuracy"

    def __init__(self, taskset, task_transforms=None, *, shots: int | None = None,
                 splits: Mapping[str, Taskset] | None = None):
        if isinstance(taskset, Taskset):
            if task_transforms is not None:
                raise ValueError("give task_transforms to the Taskset, or a dataset and task_transforms, not both")
        else:
            taskset = Taskset(taskset, task_transforms)
        if splits is not None and splits.get("train", taskset) is not taskset:
            raise ValueError("splits['train'] must be the family's own taskset (the first argument)")
        if shots is not None and shots < 1:
            raise ValueError(f"shots must be positive, got {shots}")
        self.taskset = taskset
        self.shots = shots
        self.splits = None if splits is None else {"train": taskset, **splits}
        self._input_shape: tuple[int, ...] | None = None
        self._ways: int | None = None

    def taskset_for(self, split: str) -> Taskset:
        if self.splits is None:
            return self.taskset
        if split not in self.splits:
            raise UserError(f"the l2l taskset family has no '{split}' taskset (it has {', '.join(self.splits)}); "
                            f"pass splits={{'{split}': taskset, ...}} to TasksetFamily")
        return self.splits[split]

    # -- specs (driver side) ------------------------------------------------------------------------
    def _resized(self, transforms: list, ways, shots, num_query) -> tuple[list, int | None]:
        """Copies of the pipeline with NWays/KShots resized, and the support shots per class to use
        (None: half of what the tasks keep per class)."""
        if not (ways or shots or num_query):
            return transforms, self.shots
        if ways and not any(isinstance(t, _WAYS) for t in transforms):
            raise UserError("overriding ways needs an NWays (or FusedNWaysKShots) transform in the pipeline")
        per_class = _per_class(transforms)
        if (shots or num_query) and per_class is None:
            raise UserError("overriding shots or num_query needs a KShots (or FusedNWaysKShots) transform "
                            "in the taskset's pipeline")
        default_support = self.shots or (per_class // 2 if per_class else None)
        support = shots or default_support
        resized = []
        for t in transforms:
            if ways and isinstance(t, _WAYS):
                t = copy.copy(t)
                t.n = ways
            if (shots or num_query) and isinstance(t, _SHOTS):
                t = copy.copy(t)
                t.k = support + (num_query or per_class - default_support)
            resized.append(t)
        return resized, support

    def spec(self, seed, split, step, index, *, ways=None, shots=None, num_query=None) -> TaskSpec:
        taskset = self.taskset_for(split)
        transforms, support = self._resized(transform_list(taskset.task_transforms), ways, shots, num_query)
        task_seed = spec_rng(seed, split, step, index).getrandbits(63)
        description = taskset.sample_task_description(task_seed, transforms)
        rows, classes = self._class_major(taskset.dataset, description)
        n = len(set(classes))
        per_class = len(rows) // n
        support = support or per_class // 2
        if not 1 <= support < per_class:
            raise UserError(f"tasks keep {per_class} items per class, which cannot give {support} support "
                            f"shots and at least one query; change KShots' k or the family's shots")
        return TaskSpec(self.name, split, step, index, task_seed, params=(float(support), float(per_class - support)),
                        classes=tuple(classes), rows=tuple(rows))

    @staticmethod
    def _class_major(dataset, description) -> tuple[list[int], list[int]]:
        """Dataset indices grouped by label 0..n-1 (description order within a label), and their labels."""
        try:
            labels = [item_label(dataset, dd) for dd in description]
        except TypeError as err:
            raise UserError(f"the l2l taskset family cannot see through a per-item transform: {err}; apply "
                            f"data transforms in the dataset instead") from err
        distinct = ordered_labels(labels)
        if distinct != list(range(len(distinct))):  # no RemapLabels: label by rank
            rank = {label: i for i, label in enumerate(distinct)}
            labels = [rank[label] for label in labels]
        groups: dict[int, list[int]] = {c: [] for c in range(len(distinct))}
        for dd, label in zip(description, labels):
            groups[label].append(dd.index)
        sizes = sorted({len(g) for g in groups.values()})
        if len(sizes) != 1:
            raise UserError(f"a task's classes keep different numbers of items ({sizes}); add KShots to the "
                            f"taskset's transforms so every class has the same count")
        rows = [i for c in sorted(groups) for i in groups[c]]
        classes = [c for c in sorted(groups) for _ in groups[c]]
        return rows, classes

    # -- tensors (worker side) ----------------------------------------------------------------------
    def materialize(self, specs: Sequence[TaskSpec], device="cpu") -> TaskBatch:
        first = specs[0]
        if any(s.params != first.params or len(s.rows) != len(first.rows) for s in specs):
            raise AssertionError("a chunk's specs must share ways, shots and num_query")
        k, q = (int(v) for v in first.params)
        t, n = len(specs), len(first.rows) // (k + q)
        x = torch.stack([_input(self.taskset_for(s.split).dataset[r]) for s in specs for r in s.rows])
        shape = x.shape[1:]
        x = x.view(t, n, k + q, *shape)
        y = torch.tensor([s.classes for s in specs], dtype=torch.long).view(t, n, k + q)
        sx, qx = x[:, :, :k].reshape(t, n * k, *shape), x[:, :, k:].reshape(t, n * q, *shape)
        sy, qy = y[:, :, :k].reshape(t, n * k), y[:, :, k:].reshape(t, n * q)
        return TaskBatch(sx.contiguous(), sy.contiguous(), qx.contiguous(), qy.contiguous()).to(device)

    @property
    def input_shape(self) -> tuple[int, ...]:
        if self._input_shape is None:
            self._input_shape = tuple(_input(self.taskset.dataset[0]).shape)
        return self._input_shape

    @property
    def output_dim(self) -> int:
        """The number of ways of a training task (as its pipeline makes them)."""
        if self._ways is None:
            self._ways = len(set(self.spec(0, "train", 0, 0).classes))
        return self._ways


class ModuleFactory:
    """`factory(input_shape, output_dim, **kwargs)`: a fresh deep copy of a fixed module.

    The module is the user's, as built: `input_shape` and `output_dim` are not used to build it,
    so they must match it. `inner_lr`, `first_order` and `algorithm` are those of the l2l wrapper it
    came from (None for a bare module); `overrides()` spells them as meta-dist config overrides.
    """

    def __init__(self, module: nn.Module, inner_lr: float | None = None, first_order: bool | None = None,
                 algorithm: str | None = None):
        self.module = module
        self.inner_lr = inner_lr
        self.first_order = first_order
        self.algorithm = algorithm

    def __call__(self, input_shape, output_dim, **kwargs) -> nn.Module:
        if kwargs:
            raise TypeError(f"a model factory from l2l copies a built module and takes no keyword arguments, "
                            f"got {sorted(kwargs)}; leave model.kwargs empty")
        return copy.deepcopy(self.module)

    def overrides(self) -> list[str]:
        """`key=value` config overrides for the wrapper's algorithm, inner step size and order."""
        out = [] if self.algorithm is None else [f"algorithm.name={self.algorithm}"]
        if self.inner_lr is not None:
            out.append(f"algorithm.inner_lr={float(self.inner_lr)}")
        if self.first_order is not None:
            out.append(f"algorithm.first_order={str(bool(self.first_order)).lower()}")
        return out


def model_factory(maml_or_module) -> ModuleFactory:
    """A picklable model factory copying `MAML.module` / `MetaSGD.module` (or a bare module).

    The module is snapshotted now; it must be the meta-learner's own, not an adapted clone.
    """
    if isinstance(maml_or_module, (MAML, MetaSGD)):
        learner = maml_or_module
        algorithm = "metasgd" if isinstance(learner, MetaSGD) else "fomaml" if learner.first_order else "maml"
        module, settings = learner.module, (float(learner.lr), bool(learner.first_order), algorithm)
    elif isinstance(maml_or_module, nn.Module):
        module, settings = maml_or_module, (None, None, None)
    else:
        raise TypeError(f"model_factory takes an l2l MAML/MetaSGD or an nn.Module, got {type(maml_or_module).__name__}")
    if not all(p.is_leaf for p in module.parameters()):
        raise ValueError("model_factory needs the meta-learner's module, not a clone (its parameters are "
                         "non-leaf tensors); pass the MAML wrapper itself")
    return ModuleFactory(copy.deepcopy(module), *settings)


__all__ = ["ModuleFactory", "TasksetFamily", "model_factory"]
