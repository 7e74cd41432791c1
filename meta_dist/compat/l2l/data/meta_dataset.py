"""learn2learn's MetaDataset family: a classification dataset plus its label bookkeeping.

`labels_to_indices` (label -> indices of its items, in index order), `indices_to_labels` (index ->
label) and `labels` (in first-appearance order) are what task transforms draw from. Building them
means knowing every item's label: given either map, the other is derived; otherwise they are read
from a cheap per-item label attribute when the dataset has one (torchvision's `targets`, Omniglot's
`_flat_character_images`, recursing through `Subset`) and no `target_transform` that could change
them, and only failing that by loading every item once, as learn2learn does. The attribute path
trusts that the attribute is aligned with indexing, which holds for torchvision's datasets.
"""
from __future__ import annotations

import bisect
from collections import defaultdict

from torch.utils.data import Dataset, Subset


def _scalar(label):
    """A hashable Python label: tensors and numpy scalars become Python numbers."""
    return label.item() if hasattr(label, "item") else label


def _attribute_labels(dataset) -> list | None:
    """Per-item labels from an attribute, or None when there is no trustworthy one."""
    if getattr(dataset, "target_transform", None) is not None:
        return None
    if isinstance(dataset, Subset):
        inner = _attribute_labels(dataset.dataset)
        return None if inner is None else [inner[int(i)] for i in dataset.indices]
    if hasattr(dataset, "targets"):
        targets = dataset.targets
        labels = targets.tolist() if hasattr(targets, "tolist") else [_scalar(t) for t in targets]
    elif hasattr(dataset, "_flat_character_images"):  # torchvision Omniglot: (file name, class) pairs
        labels = [label for _, label in dataset._flat_character_images]
    else:
        return None
    return labels if len(labels) == len(dataset) else None


def _loaded_labels(dataset) -> list:
    labels = []
    for i in range(len(dataset)):
        label = dataset[i][1]
        try:
            labels.append(_scalar(label))
        except (ValueError, RuntimeError) as err:
            raise ValueError(f"MetaDataset needs scalar labels; item {i} has label {label!r}") from err
    return labels


class MetaDataset(Dataset):
    """Wraps a classification dataset with the label maps task transforms sample from.

    Indexing and length are the wrapped dataset's. Items must be (data, label, ...) tuples.
    """

    def __init__(self, dataset, labels_to_indices: dict | None = None, indices_to_labels: dict | None = None):
        if not isinstance(dataset, Dataset):
            raise TypeError(f"MetaDataset wraps a torch Dataset, got {type(dataset).__name__}")
        self.dataset = dataset
        self.create_bookkeeping(labels_to_indices, indices_to_labels)

    def create_bookkeeping(self, labels_to_indices: dict | None = None, indices_to_labels: dict | None = None):
        """Build `labels_to_indices`, `indices_to_labels` and `labels` (see the module docstring)."""
        if labels_to_indices is not None:
            indices_to_labels = {i: label for label, indices in labels_to_indices.items() for i in indices}
        elif indices_to_labels is None:
            per_item = _attribute_labels(self.dataset)
            per_item = _loaded_labels(self.dataset) if per_item is None else per_item
            indices_to_labels = dict(enumerate(per_item))
        if labels_to_indices is None:
            labels_to_indices = defaultdict(list)
            for i, label in indices_to_labels.items():
                labels_to_indices[label].append(i)
        self._set_bookkeeping(labels_to_indices, indices_to_labels)

    def _set_bookkeeping(self, labels_to_indices: dict, indices_to_labels: dict):
        self.labels_to_indices = labels_to_indices
        self.indices_to_labels = indices_to_labels
        self.labels = list(labels_to_indices.keys())
        self._bookkeeping = {"labels_to_indices": labels_to_indices, "indices_to_labels": indices_to_labels,
                             "labels": self.labels}

    def __getitem__(self, item):
        return self.dataset[item]

    def __len__(self):
        return len(self.dataset)


class FilteredMetaDataset(MetaDataset):
    """The items of `dataset` whose label is in `labels`, re-indexed 0..M-1, labels kept as they are.

    Items are ordered label by label (in the order `labels` gives), each label's in dataset order.
    """

    def __init__(self, dataset, labels):
        if not isinstance(dataset, MetaDataset):
            dataset = MetaDataset(dataset)
        self.dataset = dataset
        self.to_true_indices = [i for label in labels for i in dataset.labels_to_indices[label]]
        labels_to_indices = defaultdict(list)
        indices_to_labels = {}
        for new, true in enumerate(self.to_true_indices):
            label = dataset.indices_to_labels[true]
            labels_to_indices[label].append(new)
            indices_to_labels[new] = label
        self._set_bookkeeping(labels_to_indices, indices_to_labels)

    def __getitem__(self, item):
        return self.dataset[self.to_true_indices[item]]

    def __len__(self):
        return len(self.to_true_indices)


class UnionMetaDataset(MetaDataset):
    """The concatenation of several datasets, labels renumbered consecutively across them.

    Dataset d's labels become offset_d + (position of the label in d's `labels`), offset_d being the
    number of labels of the datasets before it, so equal labels of two datasets stay distinct.
    An item is returned as a list whose second entry is its union label.
    """

    def __init__(self, datasets):
        self.datasets = [ds if isinstance(ds, MetaDataset) else MetaDataset(ds) for ds in datasets]
        self._starts = []
        labels_to_indices = defaultdict(list)
        indices_to_labels = {}
        index_offset = label_offset = 0
        for ds in self.datasets:
            self._starts.append(index_offset)
            local = {label: label_offset + i for i, label in enumerate(ds.labels)}
            for i in range(len(ds)):
                label = local[ds.indices_to_labels[i]]
                indices_to_labels[index_offset + i] = label
                labels_to_indices[label].append(index_offset + i)
            index_offset += len(ds)
            label_offset += len(ds.labels)
        self._set_bookkeeping(labels_to_indices, indices_to_labels)

    def __getitem__(self, item):
        if not 0 <= item < len(self):
            raise IndexError(f"index {item} out of range for a union of {len(self)} items")
        d = bisect.bisect_right(self._starts, item) - 1
        data = list(self.datasets[d][item - self._starts[d]])
        data[1] = self.indices_to_labels[item]
        return data

    def __len__(self):
        return len(self.indices_to_labels)


__all__ = ["FilteredMetaDataset", "MetaDataset", "UnionMetaDataset"]
