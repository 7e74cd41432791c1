"""Episodic task specs and batches from a task store: determinism, layout, errors."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from meta_dist import config as config_mod, tasks
from meta_dist.errors import UserError
from meta_dist.tasks.store import ImageRow, write_store

NUM_CLASSES, PER_CLASS = 6, 4


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    rng = np.random.default_rng(0)
    rows = [ImageRow(f"A/c{c}", rng.integers(0, 256, (8, 8, 1), dtype=np.uint8), "A", f"c{c}", d)
            for c in range(NUM_CLASSES) for d in range(PER_CLASS)]
    splits = {f"A/c{c}": ([("train", r) for r in range(4)] if c < 4 else [("test", 0)]) for c in range(NUM_CLASSES)}
    return write_store(tmp_path_factory.mktemp("ep") / "s", iter(rows), dataset="omniglot", split_name="vinyals",
                       image_shape=(1, 8, 8), class_splits=splits, rotations=True)


def family(store_dir, **task):
    cfg = config_mod.load(None, [f"task.{k}={v}" for k, v in {"name": "omniglot", **task}.items()])
    return tasks.build(cfg, str(store_dir))


def test_spec_is_a_function_of_seed_split_step_index(store_dir):
    a, b = family(store_dir, ways=3, shots=1, num_query=2), family(store_dir, ways=3, shots=1, num_query=2)
    assert a.spec(7, "train", 3, 1) == b.spec(7, "train", 3, 1)
    assert a.spec(7, "train", 3, 1) != a.spec(7, "train", 3, 2) != a.spec(8, "train", 3, 1)
    np.random.seed(123), torch.manual_seed(123)  # the global RNGs play no part
    assert a.spec(7, "train", 3, 1) == b.spec(7, "train", 3, 1)
    s = a.spec(7, "train", 3, 1)
    assert len(set(s.classes)) == 3 and len(s.rows) == 3 * 3 and len(s.rotations) == 3
    store = a.store
    for w, c in enumerate(s.classes):  # class-major rows, distinct, inside their class
        rows = s.rows[w * 3: (w + 1) * 3]
        assert len(set(rows)) == 3
        assert all(store.first_row[c] <= r < store.first_row[c] + store.num_rows[c] for r in rows)
        assert store.rotation[c] == s.rotations[w]


def test_materialize_layout_rotation_and_normalization(store_dir):
    fam = family(store_dir, ways=4, shots=2, num_query=1)
    specs = fam.specs(0, "train", 1, 3)
    b = fam.materialize(specs)
    assert b.support_x.shape == (3, 8, 1, 8, 8) and b.query_x.shape == (3, 4, 1, 8, 8)
    assert b.support_x.dtype == torch.float32 and b.support_y.dtype == torch.int64
    assert b.support_y[0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3] and b.query_y[0].tolist() == [0, 1, 2, 3]
    store = fam.store
    mean, std = store.manifest["mean"][0], store.manifest["std"][0]
    s = specs[0]
    raw = torch.from_numpy(store.pixels(np.array(s.rows[:1]))).permute(0, 3, 1, 2).float() / 255
    expect = (torch.rot90(raw[0], s.rotations[0], dims=(-2, -1)) - mean) / std
    assert torch.allclose(b.support_x[0, 0], expect, atol=1e-6)
    assert torch.equal(fam.materialize(specs).query_x, b.query_x)


def test_pickles_without_the_store_and_reopens_lazily(store_dir):
    fam = family(store_dir, ways=2, shots=1, num_query=1)
    spec = fam.spec(0, "train", 1, 0)
    clone = pickle.loads(pickle.dumps(fam))
    assert clone._store is None
    assert torch.equal(clone.materialize([spec]).support_x, fam.materialize([spec]).support_x)


def test_rotations_off_uses_only_unrotated_classes(store_dir):
    fam = family(store_dir, ways=4, shots=1, num_query=1, augment_rotations=False)
    assert set(fam.spec(0, "train", 1, 0).rotations) == {0}
    with pytest.raises(UserError, match="5-way episodes need 5 classes.*has 4"):
        fam.spec(0, "train", 1, 0, ways=5)


def test_errors_name_the_numbers(store_dir):
    fam = family(store_dir, ways=3, shots=1, num_query=1)
    with pytest.raises(UserError, match="3-way episodes need 3 classes, but the 'test' split .* has 2"):
        fam.spec(0, "test", 0, 0)
    with pytest.raises(UserError, match="need 5 images, but class .* has 4"):
        fam.spec(0, "train", 0, 0, shots=2, num_query=3)
    with pytest.raises(UserError, match="needs a task store"):
        family("", ways=2).spec(0, "train", 0, 0)
    with pytest.raises(UserError, match="holds omniglot, but the config's task.name is cifarfs"):
        family(store_dir, name="cifarfs").spec(0, "train", 0, 0)
