"""meta_dist.compat.l2l.data against learn2learn's documented behaviour: MetaDataset and its filtered
and union forms, the task transforms, and Taskset.

The tests use a small in-memory dataset (10 classes x 6 items of 1x8x8, tests/helpers/l2l_data.py) so
the module runs in seconds.
"""
import pickle
import random

import pytest
import torch

from meta_dist.compat import l2l
from meta_dist.compat.l2l.data import transforms as T
from tests.helpers.l2l_data import ITEMS, WAYS, TinyImages, pipeline


@pytest.fixture
def dataset():
    return l2l.data.MetaDataset(TinyImages())


def indices(description):
    return [dd.index for dd in description]


def labels_of(ds, description):
    return [ds.indices_to_labels[dd.index] for dd in description]


# -- data: MetaDataset --------------------------------------------------------------------------------
def test_metadataset_bookkeeping(dataset):
    assert len(dataset) == WAYS * ITEMS and dataset.labels == list(range(WAYS))
    assert dataset.labels_to_indices[3] == list(range(18, 24))
    assert all(dataset.indices_to_labels[i] == i // ITEMS for i in range(len(dataset)))
    x, y = dataset[7]
    assert x.shape == (1, 8, 8) and y == 1


def test_metadataset_reads_label_attributes_without_loading():
    raw = TinyImages(with_targets=True)
    ds = l2l.data.MetaDataset(raw)
    assert raw.loads == 0
    assert dict(ds.labels_to_indices) == dict(l2l.data.MetaDataset(TinyImages()).labels_to_indices)
    raw.target_transform = lambda y: y + 100  # attribute labels would be wrong: load the items instead
    assert l2l.data.MetaDataset(raw).labels == [100 + c for c in range(WAYS)]


def test_metadataset_from_given_maps():
    raw = TinyImages()
    by_label = {c: list(range(c * ITEMS, (c + 1) * ITEMS)) for c in range(WAYS)}
    ds = l2l.data.MetaDataset(raw, labels_to_indices=by_label)
    assert raw.loads == 0 and ds.indices_to_labels[13] == 2
    ds = l2l.data.MetaDataset(raw, indices_to_labels={i: i // ITEMS for i in range(len(raw))})
    assert ds.labels_to_indices[9] == list(range(54, 60))
    with pytest.raises(TypeError):
        l2l.data.MetaDataset([1, 2, 3])


def test_filtered_and_union(dataset):
    filtered = l2l.data.FilteredMetaDataset(dataset, [7, 2])
    assert len(filtered) == 12 and filtered.labels == [7, 2]
    assert filtered.labels_to_indices[7] == list(range(6)) and filtered[0][1] == 7
    assert torch.equal(filtered[6][0], dataset[12][0])
    union = l2l.data.UnionMetaDataset([dataset, l2l.data.MetaDataset(TinyImages())])
    assert len(union) == 120 and union.labels == list(range(20))
    assert union[61][1] == 10 and torch.equal(union[61][0], dataset[1][0])
    assert union.indices_to_labels[119] == 19


# -- data: transforms ---------------------------------------------------------------------------------
def test_nways_and_kshots_counts(dataset):
    rng = random.Random(0)
    description = T.NWays(dataset, n=3)(None, rng)
    assert len(description) == 3 * ITEMS and len(set(labels_of(dataset, description))) == 3
    narrowed = T.NWays(dataset, n=2)(description, rng)
    assert set(labels_of(dataset, narrowed)) < set(labels_of(dataset, description))
    shots = T.KShots(dataset, k=2)(description, rng)
    counts = {c: labels_of(dataset, shots).count(c) for c in set(labels_of(dataset, shots))}
    assert len(counts) == 3 and set(counts.values()) == {2}
    assert len(set(indices(shots))) == 6  # without replacement
    with pytest.raises(ValueError):
        T.KShots(dataset, k=ITEMS + 1)(description, rng)
    with pytest.raises(ValueError):
        T.NWays(dataset, n=4)(description, rng)


def test_kshots_with_replacement(dataset):
    description = T.KShots(dataset, k=ITEMS + 4, replacement=True)(T.NWays(dataset, n=2)(None, random.Random(1)),
                                                                  random.Random(2))
    assert len(description) == 2 * (ITEMS + 4) and len(set(indices(description))) <= 2 * ITEMS
    assert len({id(dd.transforms) for dd in description}) == len(description)  # no shared transform lists


def test_fused_nways_kshots(dataset):
    fused = T.FusedNWaysKShots(dataset, n=3, k=2, filter_labels=[0, 1, 2, 3])
    description = fused(None, random.Random(0))
    assert len(description) == 6 and set(labels_of(dataset, description)) <= {0, 1, 2, 3}


def test_filter_labels(dataset):
    description = T.FilterLabels(dataset, [1, 8])(None)
    assert indices(description) == list(range(6, 12)) + list(range(48, 54))
    assert labels_of(dataset, T.FilterLabels(dataset, [8])(description)) == [8] * ITEMS


def test_load_remap_and_consecutive_labels(dataset):
    rng = random.Random(3)
    description = T.KShots(dataset, k=2)(T.NWays(dataset, n=4)(None, rng), rng)
    rng.shuffle(description)
    description = T.ConsecutiveLabels(dataset)(description)
    original = labels_of(dataset, description)
    assert original == sorted(original)
    T.LoadData(dataset)(description)
    T.RemapLabels(dataset, shuffle=False)(description)
    X, y = l2l.data.Taskset(dataset).get_task(description)
    assert X.shape == (8, 1, 8, 8) and y.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert torch.equal(X[0], dataset[description[0].index][0])
    description = T.RemapLabels(dataset)(T.LoadData(dataset)(T.NWays(dataset, n=5)(None, rng)), rng)
    _, y = l2l.data.Taskset(dataset).get_task(description)
    assert sorted(set(y.tolist())) == list(range(5))


# -- data: Taskset ------------------------------------------------------------------------------------
def make_taskset(seed=0, num_tasks=20, **kwargs):
    ds = l2l.data.MetaDataset(TinyImages())
    return l2l.data.TaskDataset(ds, task_transforms=pipeline(ds), num_tasks=num_tasks, seed=seed, **kwargs)


def test_taskset_fixed_tasks_and_shapes():
    taskset = make_taskset()
    assert l2l.data.TaskDataset is l2l.data.Taskset and len(taskset) == 20
    X, y = taskset[3]
    assert X.shape == (10, 1, 8, 8) and y.shape == (10,) and sorted(set(y.tolist())) == list(range(5))
    assert torch.equal(taskset[3][0], X)  # cached: the same task every time
    assert not torch.equal(taskset[4][0], X)
    assert indices(taskset.description(3)) == indices(taskset.sampled_descriptions[3])
    with pytest.raises(IndexError):
        taskset[20]
    assert sum(1 for _ in taskset) == 20


@pytest.fixture
def global_random():
    """Lets a test reseed the global `random`, and puts its state back afterwards."""
    state = random.getstate()
    yield random
    random.setstate(state)


def test_taskset_same_seed_same_tasks_regardless_of_global_random(global_random):
    random.seed(1)
    a = make_taskset(seed=5)
    first = [indices(a.description(i)) for i in range(5)]
    random.seed(2)
    b = make_taskset(seed=5)
    assert [indices(b.description(i)) for i in range(5)] == first
    state = random.getstate()
    draws_a = [a.sample()[0] for _ in range(4)]
    draws_b = [b.sample()[0] for _ in range(4)]
    assert random.getstate() == state  # the global generator is neither read nor advanced
    assert all(torch.equal(x, z) for x, z in zip(draws_a, draws_b))
    assert [indices(make_taskset(seed=6).description(i)) for i in range(5)] != first


def test_endless_taskset():
    taskset = make_taskset(num_tasks=-1)
    assert len(taskset) == 1
    tasks = [taskset[0][0], taskset[0][0], next(iter(taskset))[0], taskset.sample()[0]]
    assert all(not torch.equal(tasks[i], tasks[j]) for i in range(4) for j in range(i))
    again = make_taskset(num_tasks=-1)
    assert torch.equal(again[0][0], tasks[0])  # the stream depends on the seed only
    with pytest.raises(ValueError):
        make_taskset(num_tasks=0)


def test_endless_taskset_streams_differ_per_dataloader_worker(monkeypatch):
    from types import SimpleNamespace

    from meta_dist.compat.l2l.data import task_dataset

    streams = []
    for worker in (0, 1):
        monkeypatch.setattr(task_dataset, "get_worker_info", lambda: SimpleNamespace(id=worker))
        streams.append(indices(make_taskset(num_tasks=-1).sample_task_description()))
    assert streams[0] != streams[1]
    monkeypatch.setattr(task_dataset, "get_worker_info", lambda: SimpleNamespace(id=0))
    assert indices(make_taskset(num_tasks=-1).sample_task_description()) == streams[0]


def test_task_collate():
    taskset = make_taskset(task_collate=lambda items: items)
    items = taskset[0]
    assert len(items) == 10 and items[0][0].shape == (1, 8, 8)
    ds = l2l.data.MetaDataset(TinyImages())
    X = l2l.data.Taskset(ds, [T.NWays(ds, 2), T.KShots(ds, 3)], num_tasks=2)[0]
    assert X.shape == (6,) and X.dtype == torch.long  # no LoadData: the indices themselves


def test_partition_task():
    data = torch.arange(12).float().view(6, 2)
    labels = torch.tensor([1, 0, 1, 0, 1, 0])
    (sx, sy), (qx, qy) = l2l.data.partition_task(data, labels, shots=1)
    assert sy.tolist() == [0, 1] and qy.tolist() == [0, 0, 1, 1]
    assert torch.equal(sx, data[[1, 0]]) and torch.equal(qx, data[[3, 5, 2, 4]])


def test_taskset_pickles_without_its_cache():
    taskset = make_taskset()
    X, _ = taskset[2]
    copy_ = pickle.loads(pickle.dumps(taskset))
    assert copy_.sampled_descriptions == {} and torch.equal(copy_[2][0], X)
