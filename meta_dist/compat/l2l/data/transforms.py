"""learn2learn's task transforms: each turns a task description into a narrower one.

A task description is a list of `DataDescription`s: a dataset index plus the per-item transforms
that turn it into data (`LoadData` appends the load, `RemapLabels` a relabelling). A transform given
None starts from a fresh description (every item of the dataset, or a cheaper equivalent), so the
first transform of a pipeline may receive None. Called with `rng`, a transform draws every random
choice from that `random.Random`; `Taskset` passes one seeded per (task, position), so a task does not
depend on the process or the global `random` state. Called without it (outside a Taskset), it draws
from a fresh OS-seeded generator, never from the global one.

Before any random choice, labels are put in a fixed order (first appearance; sorted for RemapLabels),
never a set's order, so draws are reproducible even for string labels, whose set order changes
between processes. Per-item transforms are small picklable objects rather than closures, so
descriptions ship to other processes.
"""
from __future__ import annotations

import random


class DataDescription:
    """One item of a task: its `index` in the dataset and the `transforms` that produce its data."""

    __slots__ = ("index", "transforms")

    def __init__(self, index: int, transforms: list | None = None):
        self.index = index
        self.transforms = [] if transforms is None else transforms

    def __repr__(self) -> str:
        return f"DataDescription(index={self.index}, transforms={len(self.transforms)})"

    def __getstate__(self):
        return self.index, self.transforms

    def __setstate__(self, state):
        self.index, self.transforms = state


# -- per-item transforms: what DataDescription.transforms hold ------------------------------------
class LoadItem:
    """Loads `dataset[index]`; leaves a label as it is (see `item_label`)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __call__(self, index):
        return self.dataset[index]

    def label(self, label):
        return label


class RemapItem:
    """Replaces a loaded item's label (its second entry) by `mapping[label]`."""

    def __init__(self, mapping: dict):
        self.mapping = mapping

    def __call__(self, data):
        data = list(data)
        data[1] = self.label(data[1])
        return data

    def label(self, label):
        key = label.item() if hasattr(label, "item") else label
        return self.mapping[key]


def item_label(dataset, dd: DataDescription):
    """The label the item of `dd` will carry once its transforms ran, computed without loading it.

    Only per-item transforms with a `label` method (those of this module) can be seen through; any
    other makes the label unknowable without the data, which is a TypeError.
    """
    label = dataset.indices_to_labels[dd.index]
    for transform in dd.transforms:
        if not hasattr(transform, "label"):
            raise TypeError(f"per-item transform {transform!r} has no label(); only LoadData and RemapLabels "
                            f"items can be read without loading the data")
        label = transform.label(label)
    return label


# -- task transforms ----------------------------------------------------------------------------------
def _rng(rng: random.Random | None) -> random.Random:
    return random.Random() if rng is None else rng


def _labels_in_order(labels) -> list:
    """Distinct labels in first-appearance order."""
    return list(dict.fromkeys(labels))


def ordered_labels(labels) -> list:
    """Distinct labels, sorted when they are mutually comparable, else in first-appearance order."""
    distinct = _labels_in_order(labels)
    try:
        return sorted(distinct)
    except TypeError:  # mixed label types have no order: first appearance is still deterministic
        return distinct


def _sample(rng: random.Random, population: list, k: int, what: str) -> list:
    if k > len(population):
        raise ValueError(f"cannot draw {k} {what} from {len(population)}")
    return rng.sample(population, k)


class TaskTransform:
    """Base class: holds the dataset (a MetaDataset); `new_task()` describes all its items."""

    def __init__(self, dataset):
        self.dataset = dataset

    def new_task(self, rng: random.Random | None = None) -> list[DataDescription]:
        return [DataDescription(i) for i in range(len(self.dataset))]

    def __call__(self, task_description, rng: random.Random | None = None):
        raise NotImplementedError

    def _start(self, task_description, rng):
        return self.new_task(rng) if task_description is None else task_description


class LoadData(TaskTransform):
    """Appends the loading of `dataset[index]` to every item."""

    def __init__(self, dataset):
        super().__init__(dataset)
        self._load = LoadItem(dataset)

    def __call__(self, task_description, rng=None):
        task_description = self._start(task_description, rng)
        for dd in task_description:
            dd.transforms.append(self._load)
        return task_description


class FilterLabels(TaskTransform):
    """Keeps the items whose label is in `labels`."""

    def __init__(self, dataset, labels):
        super().__init__(dataset)
        self.labels = list(labels)
        self._keep = set(self.labels)

    def new_task(self, rng=None):
        to_label = self.dataset.indices_to_labels
        return [DataDescription(i) for i in range(len(self.dataset)) if to_label[i] in self._keep]

    def __call__(self, task_description, rng=None):
        if task_description is None:
            return self.new_task(rng)
        to_label = self.dataset.indices_to_labels
        return [dd for dd in task_description if to_label[dd.index] in self._keep]


class NWays(TaskTransform):
    """Keeps the items of `n` random labels among those present in the description."""

    def __init__(self, dataset, n: int = 2):
        super().__init__(dataset)
        self.n = n

    def new_task(self, rng=None):
        classes = _sample(_rng(rng), list(self.dataset.labels), self.n, "ways (labels)")
        return [DataDescription(i) for c in classes for i in self.dataset.labels_to_indices[c]]

    def __call__(self, task_description, rng=None):
        if task_description is None:
            return self.new_task(rng)
        to_label = self.dataset.indices_to_labels
        present = _labels_in_order(to_label[dd.index] for dd in task_description)
        keep = set(_sample(_rng(rng), present, self.n, "ways (labels)"))
        return [dd for dd in task_description if to_label[dd.index] in keep]


class KShots(TaskTransform):
    """Keeps `k` random items of each label present (with replacement: duplicates may repeat)."""

    def __init__(self, dataset, k: int = 1, replacement: bool = False):
        super().__init__(dataset)
        self.k = k
        self.replacement = replacement

    def __call__(self, task_description, rng=None):
        rng = _rng(rng)
        task_description = self._start(task_description, rng)
        to_label = self.dataset.indices_to_labels
        by_label: dict = {}
        for dd in task_description:
            by_label.setdefault(to_label[dd.index], []).append(dd)
        result = []
        for label, items in by_label.items():
            if self.replacement:  # a duplicate gets its own transform list, as a deep copy would
                result.extend(DataDescription(dd.index, list(dd.transforms)) for dd in rng.choices(items, k=self.k))
            else:
                result.extend(_sample(rng, items, self.k, f"shots of label {label!r}"))
        return result


class FusedNWaysKShots(TaskTransform):
    """FilterLabels, NWays and KShots in one step (one pass over chosen classes when starting anew)."""

    def __init__(self, dataset, n: int = 2, k: int = 1, replacement: bool = False, filter_labels=None):
        super().__init__(dataset)
        self.n, self.k, self.replacement = n, k, replacement
        self.filter_labels = list(dataset.labels) if filter_labels is None else list(filter_labels)

    def new_task(self, rng=None):
        rng = _rng(rng)
        result = []
        for label in _sample(rng, self.filter_labels, self.n, "ways (labels)"):
            indices = self.dataset.labels_to_indices[label]
            chosen = rng.choices(indices, k=self.k) if self.replacement else \
                _sample(rng, list(indices), self.k, f"shots of label {label!r}")
            result.extend(DataDescription(i) for i in chosen)
        return result

    def __call__(self, task_description, rng=None):
        if task_description is None:
            return self.new_task(rng)
        rng = _rng(rng)
        narrowed = FilterLabels(self.dataset, self.filter_labels)(task_description)
        narrowed = NWays(self.dataset, self.n)(narrowed, rng)
        return KShots(self.dataset, self.k, self.replacement)(narrowed, rng)


class RemapLabels(TaskTransform):
    """Relabels the loaded items of a task with K labels as 0..K-1 (a random assignment if shuffle)."""

    def __init__(self, dataset, shuffle: bool = True):
        super().__init__(dataset)
        self.shuffle = shuffle

    def __call__(self, task_description, rng=None):
        task_description = self._start(task_description, rng)
        labels = ordered_labels(self.dataset.indices_to_labels[dd.index] for dd in task_description)
        if self.shuffle:
            _rng(rng).shuffle(labels)
        remap = RemapItem({label: i for i, label in enumerate(labels)})
        for dd in task_description:
            dd.transforms.append(remap)
        return task_description


class ConsecutiveLabels(TaskTransform):
    """Sorts the items by dataset label, so each label's items are contiguous.

    The sort key is the dataset's label, not a remapped one: after RemapLabels the task's labels
    are grouped but not necessarily in increasing order (as in learn2learn).
    """

    def __call__(self, task_description, rng=None):
        task_description = self._start(task_description, rng)
        to_label = self.dataset.indices_to_labels
        return sorted(task_description, key=lambda dd: to_label[dd.index])


__all__ = ["ConsecutiveLabels", "DataDescription", "FilterLabels", "FusedNWaysKShots", "KShots", "LoadData",
           "NWays", "RemapLabels", "TaskTransform", "item_label", "ordered_labels"]
