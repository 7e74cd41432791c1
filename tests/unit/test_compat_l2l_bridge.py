"""meta_dist.compat.l2l.bridge: a learn2learn Taskset as a meta-dist task family and a learn2learn
model as a meta-dist model factory, and meta-dist's MAML on those tasks against the l2l loop.

The tests use a small in-memory dataset (10 classes x 6 items of 1x8x8, tests/helpers/l2l_data.py) so
the module runs in seconds.
"""
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from meta_dist.compat import l2l
from meta_dist.compat.l2l.data import transforms as T
from tests.helpers.l2l_data import TinyImages, pipeline


class AsLists(TinyImages):
    """Items whose data is not a tensor (as a torchvision dataset without ToTensor gives PIL images)."""

    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        return x.tolist(), y


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
