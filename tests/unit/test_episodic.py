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


@pytest.fixture(scope="module")
def alphabets_dir(tmp_path_factory):
    """Three test alphabets of 2, 4 and 5 characters, and a train alphabet of 3 (with rotation classes)."""
    rng = np.random.default_rng(1)
    sizes = {"Train": 3, "Small": 2, "Mid": 4, "Big": 5}
    keys = [(a, f"{a}/c{c}") for a, n in sizes.items() for c in range(n)]
    rows = [ImageRow(k, rng.integers(0, 256, (8, 8, 1), dtype=np.uint8), a, k, d) for a, k in keys for d in range(3)]
    splits = {k: ([("train", r) for r in range(4)] if a == "Train" else [("test", 0)]) for a, k in keys}
    return write_store(tmp_path_factory.mktemp("alph") / "s", iter(rows), dataset="omniglot",
                       split_name="background", image_shape=(1, 8, 8), class_splits=splits, rotations=True)


def test_within_alphabet_episodes_draw_every_class_from_one_eligible_alphabet(alphabets_dir):
    fam = family(alphabets_dir, ways=4, shots=1, num_query=1, within_alphabet="true")
    alphabet = fam.store.class_alphabets()
    drawn = set()
    for i in range(40):
        spec = fam.spec(3, "test", 0, i)
        groups = {alphabet[c] for c in spec.classes}
        assert len(groups) == 1 and len(set(spec.classes)) == 4
        drawn |= groups
    assert drawn == {"Mid", "Big"}  # "Small" has too few characters for 4-way episodes
    assert fam.spec(3, "test", 0, 5) == family(alphabets_dir, ways=4, shots=1, num_query=1,
                                               within_alphabet="true").spec(3, "test", 0, 5)
    # training rotation classes belong to their character's alphabet; evaluation may switch it off
    assert {alphabet[c] for c in fam.spec(3, "train", 1, 0, ways=10).classes} == {"Train"}
    mixed = [{alphabet[c] for c in fam.spec(3, "test", 0, i, within_alphabet=False).classes} for i in range(20)]
    assert any(len(g) > 1 for g in mixed)


def test_within_alphabet_errors_name_the_fix(alphabets_dir, tmp_path):
    fam = family(alphabets_dir, ways=6, shots=1, num_query=1, within_alphabet="true")
    with pytest.raises(UserError, match="within-alphabet 6-way episodes need an alphabet with 6 classes.*largest.*5"):
        fam.spec(0, "test", 0, 0)
    rows = [ImageRow(f"c{c}", np.zeros((8, 8, 1), np.uint8), "", f"c{c}", d) for c in range(3) for d in range(2)]
    plain = write_store(tmp_path / "plain", iter(rows), dataset="images", split_name="custom",
                        image_shape=(1, 8, 8), class_splits={f"c{c}": [("test", 0)] for c in range(3)},
                        rotations=False)
    cfg = config_mod.load(None, ["task.name=images", "task.ways=2", "task.within_alphabet=true"])
    with pytest.raises(UserError, match="records no alphabet"):
        tasks.build(cfg, str(plain)).spec(0, "test", 0, 0)
    with pytest.raises(UserError, match="task.within_alphabet applies to image task stores"):
        config_mod.validate(config_mod.load(None, ["task.name=sinusoid", "task.within_alphabet=true"]))
