"""learn2learn's Taskset (TaskDataset): tasks drawn from a MetaDataset by a pipeline of task transforms.

A task is made in two stages, as in learn2learn: its *description* (a list of `DataDescription`s)
comes from running the task transforms in order, then its *data* from running each item's per-item
transforms and collating the items (`task_collate`, torch's `default_collate` by default, so a task
of (x, y) items becomes stacked `X, y`).

Seeding is the one deliberate difference from learn2learn, whose transforms draw from Python's
global `random` (so each process samples different tasks). Here a task is a function of a 63-bit
*task seed*, and transform j of the pipeline draws from `random.Random(derive_seed(task_seed, j))`:

* with `num_tasks > 0`, task i has seed derive_seed("l2l.taskset", seed, "index", i): `Taskset(...,
  seed=s)[i]` is the same task in every process and on every machine; descriptions are cached;
* with `num_tasks == -1` (an endless stream), every `taskset[i]`, `next()` and `sample()` takes the
  next number c of a draw counter and the task of seed derive_seed("l2l.taskset", seed, "draw", c);
* with `num_tasks > 0`, `sample()` picks the task index from that same counter (uniformly, as
  learn2learn's `random.randint` does), so the sequence of sampled tasks depends on the seed only;
* in a DataLoader worker process, draws are also keyed by the worker's id, so workers (which each
  copy the counter) draw different streams, as they do with learn2learn's per-worker seeding.

The global `random` state is neither read nor changed. Custom transforms that subclass
`TaskTransform` receive their seeded `rng`; plain callables are called as `t(description)` and their
own randomness is theirs to seed.
"""
from __future__ import annotations

import random
from typing import Callable

import torch
from torch.utils.data import default_collate, get_worker_info

from meta_dist.compat.l2l.data.meta_dataset import MetaDataset
from meta_dist.compat.l2l.data.transforms import DataDescription, TaskTransform
from meta_dist.tasks.spec import derive_seed


def transform_list(transforms) -> list:
    """A taskset's `task_transforms` as a list (learn2learn also accepts one callable)."""
    return [transforms] if callable(transforms) else list(transforms)


def run_transforms(transforms, task_seed: int):
    """The task description that `transforms` (a list, or one callable) produce for `task_seed`."""
    description = None
    for position, transform in enumerate(transform_list(transforms)):
        if isinstance(transform, TaskTransform):
            description = transform(description, rng=random.Random(derive_seed(task_seed, position)))
        else:
            description = transform(description)
    return description


class Taskset:
    """Tasks from `dataset` shaped by `task_transforms`; `num_tasks` fixed ones, or endless with -1.

    `len()` is `num_tasks`, or 1 for an endless taskset (whose every access draws a new task), as
    in learn2learn. Iteration yields the `num_tasks` fixed tasks in order, or new tasks forever.
    `seed` selects the tasks (see the module docstring).
    """

    def __init__(self, dataset, task_transforms=None, num_tasks: int = -1,
                 task_collate: Callable | None = None, *, seed: int = 0):
        if not isinstance(dataset, MetaDataset):
            dataset = MetaDataset(dataset)
        if num_tasks < -1 or num_tasks == 0:
            raise ValueError(f"num_tasks must be -1 (endless) or positive, got {num_tasks}")
        self.dataset = dataset
        self.task_transforms = [] if task_transforms is None else task_transforms
        self.num_tasks = num_tasks
        self.task_collate = default_collate if task_collate is None else task_collate
        self.seed = seed
        self.sampled_descriptions: dict[int, list[DataDescription]] = {}
        self._draws = 0
        self._task_id = 0

    # -- descriptions ---------------------------------------------------------------------------
    def task_seed(self, *key) -> int:
        """The seed of fixed task i (key "index", i) or of draw c (key "draw", c)."""
        return derive_seed("l2l.taskset", self.seed, *key)

    def _next_draw(self) -> int:
        # Each DataLoader worker process holds a copy of the counter: without its id in the key,
        # every worker would draw the same stream of tasks.
        self._draws += 1
        worker = get_worker_info()
        draw = ("draw", self._draws - 1)
        return self.task_seed(*draw) if worker is None else self.task_seed(*draw, "worker", worker.id)

    def sample_task_description(self, task_seed: int | None = None, transforms=None) -> list[DataDescription]:
        """The description made by the task transforms (or `transforms`) for `task_seed`.

        Without a seed, the next draw of this taskset's counter.
        """
        task_seed = self._next_draw() if task_seed is None else task_seed
        return run_transforms(self.task_transforms if transforms is None else transforms, task_seed)

    def get_task(self, task_description):
        """The collated data of a description: each item's transforms applied in order."""
        items = []
        for dd in task_description:
            data = dd.index
            for transform in dd.transforms:
                data = transform(data)
            items.append(data)
        return self.task_collate(items)

    def description(self, i: int) -> list[DataDescription]:
        """The (cached) description of fixed task `i`."""
        if not 0 <= i < self.num_tasks:
            raise IndexError(f"task {i} out of range for a taskset of {self.num_tasks} tasks")
        if i not in self.sampled_descriptions:
            self.sampled_descriptions[i] = self.sample_task_description(self.task_seed("index", i))
        return self.sampled_descriptions[i]

    # -- access -------------------------------------------------------------------------------------
    def sample(self):
        """A random task: a new one (endless taskset) or one of the fixed tasks, from the draw counter."""
        if self.num_tasks == -1:
            return self.get_task(self.sample_task_description())
        return self[random.Random(self._next_draw()).randrange(self.num_tasks)]

    def __len__(self) -> int:
        return 1 if self.num_tasks == -1 else self.num_tasks

    def __getitem__(self, i: int):
        if self.num_tasks == -1:
            return self.get_task(self.sample_task_description())
        return self.get_task(self.description(i))

    def __iter__(self):
        self._task_id = 0
        return self

    def __next__(self):
        if self.num_tasks == -1:
            return self.get_task(self.sample_task_description())
        if self._task_id >= self.num_tasks:
            raise StopIteration
        self._task_id += 1
        return self[self._task_id - 1]

    def __add__(self, other):
        raise NotImplementedError("adding tasksets is not supported (nor is it in learn2learn)")

    def __getstate__(self):
        # Cached descriptions are a pure function of the seed: recomputed where needed, not shipped.
        return {**self.__dict__, "sampled_descriptions": {}}


TaskDataset = Taskset


def partition_task(data: torch.Tensor, labels: torch.Tensor, shots: int = 1):
    """Split a task's items into ((support_x, support_y), (query_x, query_y)).

    For each label, in increasing order, its first `shots` items (in data order) are support and
    the rest query; every label must have the same number of items.
    """
    if data.shape[0] != labels.shape[0]:
        raise ValueError(f"{data.shape[0]} items but {labels.shape[0]} labels")
    groups = [torch.nonzero(labels == label).flatten() for label in labels.unique()]
    if len({len(g) for g in groups}) != 1 or len(groups[0]) < shots:
        raise ValueError(f"partition_task needs the same number (>= shots={shots}) of items per label, got "
                         f"{sorted(len(g) for g in groups)}")
    support = torch.cat([g[:shots] for g in groups])
    query = torch.cat([g[shots:] for g in groups])
    return (data[support], labels[support]), (data[query], labels[query])


__all__ = ["DataDescription", "TaskDataset", "Taskset", "partition_task", "run_transforms", "transform_list"]
