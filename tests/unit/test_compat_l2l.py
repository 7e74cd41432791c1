"""meta_dist.compat.l2l against learn2learn's documented behaviour, and its bridge to meta-dist.

Gradient references are independent of the code under test: torch.func over a functional model,
and a closed-form derivative for a one-weight model. Data tests use a small in-memory dataset (10
classes x 6 items of 1x8x8) so the module runs in seconds.
"""
import copy
import pickle
import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad
from torch.utils.data import Dataset

from meta_dist.compat import l2l
from meta_dist.compat.l2l.data import transforms as T

WAYS, ITEMS = 10, 6


class TinyImages(Dataset):
    """10 classes x 6 random 1x8x8 images; item i has label i // 6. Counts item loads."""

    target_transform = None

    def __init__(self, with_targets: bool = False):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(WAYS * ITEMS, 1, 8, 8, generator=g)
        self.y = [i // ITEMS for i in range(WAYS * ITEMS)]
        if with_targets:
            self.targets = torch.tensor(self.y)
        self.loads = 0

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        self.loads += 1
        y = self.y[i]
        return self.x[i], y if self.target_transform is None else self.target_transform(y)


class AsLists(TinyImages):
    """Items whose data is not a tensor (as a torchvision dataset without ToTensor gives PIL images)."""

    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        return x.tolist(), y


@pytest.fixture
def dataset():
    return l2l.data.MetaDataset(TinyImages())


def pipeline(ds, n=5, k=2, shuffle=True):
    return [T.NWays(ds, n=n), T.KShots(ds, k=k), T.LoadData(ds), T.RemapLabels(ds, shuffle=shuffle),
            T.ConsecutiveLabels(ds)]


def indices(description):
    return [dd.index for dd in description]


def labels_of(ds, description):
    return [ds.indices_to_labels[dd.index] for dd in description]


# -- algorithms ---------------------------------------------------------------------------------------
def regression_data(seed=0, n=8, d=3, out=2):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, out, generator=g, dtype=torch.float64),
            torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, out, generator=g, dtype=torch.float64)]


def compat_meta_grad(model, lr, data, first_order=False, steps=1):
    xs, ys, xq, yq = data
    maml = l2l.algorithms.MAML(model, lr=lr, first_order=first_order)
    learner = maml.clone()
    for _ in range(steps):
        learner.adapt(F.mse_loss(learner(xs), ys))
    F.mse_loss(learner(xq), yq).backward()
    return {k: p.grad.clone() for k, p in model.named_parameters()}


def reference_meta_grad(model, lr, data, steps=1):
    """grad_theta L_q(theta - lr * grad L_s(theta)) (repeated `steps` times), with torch.func."""
    xs, ys, xq, yq = data
    theta = {k: p.detach().clone() for k, p in model.named_parameters()}

    def support_loss(p):
        return F.mse_loss(functional_call(model, p, (xs,)), ys)

    def query_after_adaptation(p):
        for _ in range(steps):
            g = grad(support_loss)(p)
            p = {k: p[k] - lr * g[k] for k in p}
        return F.mse_loss(functional_call(model, p, (xq,)), yq)

    return grad(query_after_adaptation)(theta)


@pytest.mark.parametrize("steps", [1, 2])
def test_maml_matches_second_order_reference(steps):
    torch.manual_seed(0)
    model = nn.Linear(3, 2).double()
    data = regression_data()
    expected = reference_meta_grad(model, 0.1, data, steps)
    got = compat_meta_grad(model, 0.1, data, steps=steps)
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=1e-10, atol=1e-12)


def test_maml_matches_closed_form_on_one_weight():
    """f(x) = w x, L(w) = mean((w x - y)^2): dL_q(w')/dw = L_q'(w') (1 - lr L_s''), with w' = w - lr L_s'(w)."""
    xs, ys, xq, yq = (t[:, :1] for t in regression_data())
    lr, w = 0.05, 0.7
    model = nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        model.weight.fill_(w)
    ds1 = 2 * (xs * (w * xs - ys)).mean()
    ds2 = 2 * (xs ** 2).mean()
    w_adapted = w - lr * ds1
    dq1 = 2 * (xq * (w_adapted * xq - yq)).mean()
    second = compat_meta_grad(model, lr, (xs, ys, xq, yq))["weight"]
    model.weight.grad = None
    first = compat_meta_grad(model, lr, (xs, ys, xq, yq), first_order=True)["weight"]
    torch.testing.assert_close(second.item(), (dq1 * (1 - lr * ds2)).item())
    torch.testing.assert_close(first.item(), dq1.item())


def test_first_order_is_query_gradient_at_adapted_parameters():
    torch.manual_seed(0)
    model = nn.Linear(3, 2).double()
    xs, ys, xq, yq = data = regression_data()
    adapted = copy.deepcopy(model)
    g = torch.autograd.grad(F.mse_loss(adapted(xs), ys), list(adapted.parameters()))
    with torch.no_grad():
        for p, gp in zip(adapted.parameters(), g):
            p -= 0.1 * gp
    F.mse_loss(adapted(xq), yq).backward()
    got = compat_meta_grad(model, 0.1, data, first_order=True)
    second = reference_meta_grad(model, 0.1, data)
    for k, p in adapted.named_parameters():
        torch.testing.assert_close(got[k], p.grad)
        assert not torch.allclose(got[k], second[k])  # the Hessian term is really gone


def test_clone_isolation_and_gradient_flow():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    before = copy.deepcopy(model.state_dict())
    xs, ys, xq, yq = regression_data()
    maml = l2l.algorithms.MAML(model, lr=0.5)
    learner = maml.clone()
    assert isinstance(learner, l2l.algorithms.MAML) and learner.lr == 0.5
    assert all(not p.is_leaf for p in learner.parameters())
    learner.adapt(F.mse_loss(learner(xs), ys))
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])  # the original is untouched
    assert not torch.equal(learner.module[0].weight, model[0].weight)
    F.mse_loss(learner(xq), yq).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert maml.clone(first_order=True).first_order and not maml.clone().first_order


class WithSpare(nn.Module):
    def __init__(self):
        super().__init__()
        self.used = nn.Linear(3, 2)
        self.spare = nn.Parameter(torch.ones(2))

    def forward(self, x):
        return self.used(x)


def test_allow_unused():
    x, y = torch.randn(5, 3), torch.randn(5, 2)
    learner = l2l.algorithms.MAML(WithSpare(), lr=0.1).clone()
    with pytest.raises(RuntimeError) as err:
        learner.adapt(F.mse_loss(learner(x), y))
    assert any("allow_unused" in note for note in getattr(err.value, "__notes__", []))
    spare = learner.module.spare
    weight = learner.module.used.weight
    learner.adapt(F.mse_loss(learner(x), y), allow_unused=True)
    assert learner.module.spare is spare  # no gradient, no update
    assert learner.module.used.weight is not weight


def test_allow_nograd():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    model[0].weight.requires_grad_(False)
    x, y = torch.randn(5, 3), torch.randn(5, 2)
    maml = l2l.algorithms.MAML(model, lr=0.1)
    with pytest.raises(RuntimeError):
        learner = maml.clone()
        learner.adapt(F.mse_loss(learner(x), y))
    assert l2l.algorithms.MAML(model, lr=0.1, allow_nograd=True).allow_unused  # defaults to allow_nograd
    learner = maml.clone(allow_nograd=True)
    frozen = learner.module[0].weight
    learner.adapt(F.mse_loss(learner(x), y))
    assert learner.module[0].weight is frozen
    F.mse_loss(learner(x), y).backward()
    assert model[0].weight.grad is None and model[1].weight.grad is not None


def test_metasgd_learns_step_sizes():
    torch.manual_seed(0)
    model = nn.Linear(3, 2).double()
    xs, ys, xq, yq = regression_data()
    meta = l2l.algorithms.MetaSGD(model, lr=0.3)
    assert isinstance(meta.lrs, nn.ParameterList) and len(meta.lrs) == 2
    for lr, p in zip(meta.lrs, model.parameters()):
        assert lr.shape == p.shape and torch.all(lr == 0.3)
    with torch.no_grad():
        meta.lrs[0].mul_(torch.rand_like(meta.lrs[0]))  # per-entry step sizes
    learner = meta.clone()
    g = torch.autograd.grad(F.mse_loss(model(xs), ys), list(model.parameters()))
    learner.adapt(F.mse_loss(learner(xs), ys))
    for adapted, p, lr, gp in zip(learner.parameters(), model.parameters(), meta.lrs, g):
        torch.testing.assert_close(adapted, p - lr * gp)
    F.mse_loss(learner(xq), yq).backward()
    assert all(lr.grad is not None and lr.grad.abs().sum() > 0 for lr in meta.lrs)
    assert all(p.grad is not None for p in model.parameters())
    first = meta.clone(first_order=True)
    first.adapt(F.mse_loss(first(xs), ys))
    meta.zero_grad()
    F.mse_loss(first(xq), yq).backward()
    assert all(lr.grad.abs().sum() > 0 for lr in meta.lrs)  # the step sizes stay in the graph


def test_learner_forwards_attributes_to_module():
    model = nn.Linear(3, 2)
    maml = l2l.algorithms.MAML(model, lr=0.1)
    assert maml.weight is model.weight and maml.in_features == 3
    with pytest.raises(AttributeError):
        maml.no_such_attribute


# -- utils --------------------------------------------------------------------------------------------
class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.b.weight = self.a.weight
        self.bn = nn.BatchNorm1d(4)

    def forward(self, x):
        return self.bn(self.b(torch.relu(self.a(x))))


def test_clone_module_keeps_sharing_and_graph():
    net = Tied()
    clone = l2l.clone_module(net)
    assert clone is not net and clone.a is not net.a
    assert clone.a.weight is clone.b.weight  # tied weights stay tied
    assert clone.a.weight.grad_fn is not None and len(list(clone.parameters())) == len(list(net.parameters()))
    # Buffers that need no grad (running statistics) are shared with the original, as in learn2learn.
    assert clone.bn.running_mean is net.bn.running_mean
    clone(torch.randn(6, 4)).pow(2).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    assert l2l.utils.clone_module(3) == 3


def test_update_module_applies_updates_differentiably():
    net = nn.Linear(3, 2)
    clone = l2l.clone_module(net)
    updates = [torch.ones_like(p) for p in clone.parameters()]
    old = [p.detach().clone() for p in clone.parameters()]
    assert l2l.update_module(clone, updates=updates) is clone
    for p, o in zip(clone.parameters(), old):
        torch.testing.assert_close(p.detach(), o + 1)
        assert not p.is_leaf
    clone.bias.update = torch.full_like(clone.bias, 2.0)  # the .update attribute path
    l2l.update_module(clone)
    torch.testing.assert_close(clone.bias.detach(), old[1] + 3)
    clone(torch.randn(4, 3)).sum().backward()
    assert net.weight.grad is not None and net.bias.grad is not None


def test_update_module_updates_a_shared_parameter_once():
    net = Tied()
    clone = l2l.clone_module(net)
    params = list(clone.parameters())  # unique tensors: the tied weight appears once
    l2l.update_module(clone, updates=[torch.ones_like(p) for p in params])
    assert clone.a.weight is clone.b.weight
    torch.testing.assert_close(clone.a.weight.detach(), net.a.weight.detach() + 1)


def test_update_module_warns_on_length_mismatch():
    clone = l2l.clone_module(nn.Linear(3, 2))
    with pytest.warns(UserWarning):
        l2l.update_module(clone, updates=[torch.zeros(2, 3)])


def test_detach_module():
    net = nn.Linear(3, 2)
    clone = l2l.clone_module(net)
    l2l.detach_module(clone)
    assert all(p.grad_fn is None and not p.requires_grad for p in clone.parameters())
    clone = l2l.clone_module(net)
    l2l.detach_module(clone, keep_requires_grad=True)
    assert all(p.is_leaf and p.requires_grad for p in clone.parameters())
    clone(torch.randn(2, 3)).sum().backward()
    assert net.weight.grad is None and clone.weight.grad is not None


def test_rnn_clone_and_adapt():
    torch.manual_seed(0)
    rnn = nn.GRU(3, 4, batch_first=True)
    x = torch.randn(2, 5, 3)
    learner = l2l.algorithms.MAML(rnn, lr=0.5).clone()
    before = learner(x)[0].detach()
    learner.adapt(learner(x)[0].pow(2).mean())
    assert not torch.allclose(learner(x)[0], before)  # the forward uses the updated weights
    learner(x)[0].sum().backward()
    assert all(p.grad is not None for p in rnn.parameters())


def test_magic_box():
    x = torch.tensor([0.3, -1.0], requires_grad=True)
    box = l2l.magic_box(x)
    torch.testing.assert_close(box.detach(), torch.ones(2))
    box.sum().backward()
    torch.testing.assert_close(x.grad, torch.ones(2))


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


# -- bridge -------------------------------------------------------------------------------------------
def make_family(k=4, **kwargs):
    ds = l2l.data.MetaDataset(TinyImages())
    return l2l.bridge.TasksetFamily(l2l.data.Taskset(ds, pipeline(ds, n=5, k=k)), **kwargs), ds


def test_family_specs_are_deterministic():
    family, _ = make_family()
    other, _ = make_family()
    spec = family.spec(3, "train", 7, 1)
    assert spec == other.spec(3, "train", 7, 1) == family.spec(3, "train", 7, 1)
    variants = [family.spec(4, "train", 7, 1), family.spec(3, "test", 7, 1), family.spec(3, "train", 8, 1),
                family.spec(3, "train", 7, 2)]
    assert all(v.rows != spec.rows for v in variants)
    assert family.name == "l2l_taskset" and family.metric == "accuracy" and spec.family == "l2l_taskset"
    assert len(spec.rows) == len(spec.classes) == 20 and spec.params == (2.0, 2.0)


def test_family_spec_rows_and_labels():
    family, ds = make_family()
    spec = family.spec(0, "train", 0, 0)
    assert list(spec.classes) == [c for c in range(5) for _ in range(4)]  # class-major, 0..ways-1
    dataset_labels = [ds.indices_to_labels[r] for r in spec.rows]
    for c in range(5):  # one dataset class per task class
        assert len({dataset_labels[i] for i in range(20) if spec.classes[i] == c}) == 1
    assert len(set(dataset_labels)) == 5 and len(set(spec.rows)) == 20


def test_family_materialize():
    family, ds = make_family()
    specs = family.specs(0, "train", 2, 3)
    batch = family.materialize(specs)
    assert batch.support_x.shape == (3, 10, 1, 8, 8) and batch.query_x.shape == (3, 10, 1, 8, 8)
    assert batch.support_y.tolist()[0] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4] == batch.query_y.tolist()[0]
    for t, spec in enumerate(specs):
        rows = [spec.rows[c * 4 + j] for c in range(5) for j in range(4)]
        support = [r for i, r in enumerate(rows) if i % 4 < 2]
        query = [r for i, r in enumerate(rows) if i % 4 >= 2]
        assert torch.equal(batch.support_x[t], torch.stack([ds[r][0] for r in support]))
        assert torch.equal(batch.query_x[t], torch.stack([ds[r][0] for r in query]))
    assert family.input_shape == (1, 8, 8) and family.output_dim == 5


def test_family_shots_and_overrides():
    family, _ = make_family(k=4, shots=1)
    batch = family.materialize([family.spec(0, "train", 0, 0)])
    assert batch.support_x.shape[1] == 5 and batch.query_x.shape[1] == 15
    family, _ = make_family(k=4)
    spec = family.spec(0, "test", 0, 0, ways=3, shots=1, num_query=4)
    assert spec.params == (1.0, 4.0) and len(spec.rows) == 15 and set(spec.classes) == {0, 1, 2}
    batch = family.materialize([spec])
    assert batch.support_x.shape[1] == 3 and batch.query_x.shape[1] == 12
    with pytest.raises(ValueError, match="support"):
        make_family(k=4, shots=4)[0].spec(0, "train", 0, 0)  # no query left


def test_family_splits():
    ds = l2l.data.MetaDataset(TinyImages())
    seen = l2l.data.FilteredMetaDataset(ds, range(6))
    train = l2l.data.Taskset(seen, pipeline(seen, n=3, k=2))
    held_out = l2l.data.FilteredMetaDataset(ds, [6, 7, 8, 9])
    test = l2l.data.Taskset(held_out, pipeline(held_out, n=3, k=2))
    family = l2l.bridge.TasksetFamily(train, splits={"test": test})
    test_spec = family.spec(0, "test", 0, 0)
    loaded = family.materialize([test_spec]).support_x[0]
    assert any(torch.equal(loaded[0], held_out[r][0]) for r in test_spec.rows)
    assert all(held_out.indices_to_labels[r] >= 6 for r in test_spec.rows)
    with pytest.raises(ValueError):  # a UserError: there is no val taskset
        family.spec(0, "val", 0, 0)
    shared, _ = make_family()
    assert shared.taskset_for("val") is shared.taskset_for("train")


def test_family_rejects_uneven_classes_and_opaque_item_transforms():
    ds = l2l.data.MetaDataset(TinyImages())
    uneven = l2l.data.FilteredMetaDataset(ds, [0, 1])
    uneven.labels_to_indices[1] = uneven.labels_to_indices[1][:3]
    uneven.indices_to_labels = {i: l for l, ix in uneven.labels_to_indices.items() for i in ix}
    family = l2l.bridge.TasksetFamily(uneven, [T.NWays(uneven, 2), T.LoadData(uneven)])
    with pytest.raises(ValueError, match="KShots"):
        family.spec(0, "train", 0, 0)

    def augment(description):
        for dd in description:
            dd.transforms.append(torch.flip)
        return description

    family = l2l.bridge.TasksetFamily(ds, [T.NWays(ds, 2), T.KShots(ds, 2), augment])
    with pytest.raises(ValueError, match="per-item transform"):
        family.spec(0, "train", 0, 0)
    family = l2l.bridge.TasksetFamily(AsLists(), [T.NWays(ds, 2), T.KShots(ds, 2)])
    with pytest.raises(ValueError, match="ToTensor"):
        family.input_shape


def test_family_round_trips_through_pickle_and_cloudpickle():
    family, _ = make_family()
    specs = family.specs(1, "train", 0, 2)
    expected = family.materialize(specs)
    dumps = [pickle.dumps]
    try:
        import ray.cloudpickle
        dumps.append(ray.cloudpickle.dumps)
    except ImportError:
        pass
    for dump in dumps:
        restored = pickle.loads(dump(family))
        assert restored.specs(1, "train", 0, 2) == specs
        assert torch.equal(restored.materialize(specs).query_x, expected.query_x)


def test_model_factory():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 5))
    maml = l2l.algorithms.MAML(model, lr=0.4, first_order=True)
    factory = pickle.loads(pickle.dumps(l2l.bridge.model_factory(maml)))
    assert factory.inner_lr == 0.4 and factory.first_order is True and factory.algorithm == "fomaml"
    assert factory.overrides() == ["algorithm.name=fomaml", "algorithm.inner_lr=0.4", "algorithm.first_order=true"]
    a, b = factory((1, 8, 8), 5), factory((1, 8, 8), 5)
    assert a is not b and a[1].weight is not b[1].weight and torch.equal(a[1].weight, model[1].weight)
    with torch.no_grad():
        a[1].weight.add_(1)
    assert torch.equal(b[1].weight, model[1].weight)
    with pytest.raises(TypeError):
        factory((1, 8, 8), 5, channels=3)
    with pytest.raises(ValueError):
        l2l.bridge.model_factory(maml.clone().module)
    bare = l2l.bridge.model_factory(model)
    assert bare.inner_lr is None and bare.overrides() == []
    assert l2l.bridge.model_factory(l2l.algorithms.MetaSGD(model, lr=0.2)).algorithm == "metasgd"


def test_meta_dist_maml_on_the_bridge_matches_compat_maml():
    """meta-dist's chunked, vmapped MAML on TasksetFamily tasks = the l2l loop over the same tasks."""
    from meta_dist import algorithms, config as C
    from meta_dist.models import ModelFactory

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 5))
    maml = l2l.algorithms.MAML(model, lr=0.3)
    factory = l2l.bridge.model_factory(maml)
    family, _ = make_family()
    cfg = C.load(None, factory.overrides())
    algorithm = algorithms.build(cfg, family, model=ModelFactory(factory, {}, "l2l"))
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    specs = family.specs(0, "train", 0, 3)
    out = algorithm.chunk_update(params, specs)
    batch = family.materialize(specs)
    for t in range(batch.num_tasks):
        learner = maml.clone()
        learner.adapt(F.cross_entropy(learner(batch.support_x[t]), batch.support_y[t]))
        F.cross_entropy(learner(batch.query_x[t]), batch.query_y[t]).backward()
    for k, p in model.named_parameters():
        torch.testing.assert_close(out.grads[k], p.grad, rtol=1e-4, atol=1e-6)
