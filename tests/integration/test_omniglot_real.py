"""The real Omniglot release, end to end: the Vinyals-split store (conftest.py) checked against the split
files, train ProtoNet briefly in-process and check it learns (a reference reproduction: 88.8% after 100 episodes);
prepare Lake et al.'s background split and evaluate 20-way within-alphabet episodes from the command line."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from meta_dist import config as config_mod
from meta_dist.evaluation import evaluate
from meta_dist.runtime.driver import Trainer
from meta_dist.tasks import prepare
from meta_dist.tasks.store import open_store, verify_checksum
from tests.conftest import OMNIGLOT_SOURCE, cli

SPLITS = OMNIGLOT_SOURCE / "splits" / "vinyals"
# Measured on the 2-core development machine (threads=1, seed 0): 100 episodes of 20-way 1-shot training
# gave 88.7 +- 1.1% 5-way 1-shot test accuracy on 300 tasks (the reference reproduction: 88.8%); the threshold leaves
# a wide margin.
MIN_ACCURACY = 80.0


def prepared(tmp_path_factory, split: str) -> Path:
    if not (OMNIGLOT_SOURCE / "images_background.zip").is_file():
        pytest.skip(f"real Omniglot not found at {OMNIGLOT_SOURCE} (images_background.zip); it is not part of the repo")
    out = tmp_path_factory.mktemp("omniglot") / "store"
    prepare.main(argparse.Namespace(dataset="omniglot", source=str(OMNIGLOT_SOURCE), out=str(out), split=split,
                                    download=False, seed=1))
    return out


def test_store_matches_the_vinyals_split_files(omniglot_store):
    store = open_store(omniglot_store)
    verify_checksum(omniglot_store)
    assert store.num_images == 1623 * 20 and store.image_shape == (1, 28, 28)
    for split, count in (("train", 4112), ("val", 688), ("test", 1692)):
        ids = store.split_classes(split)
        expected = [line.strip() for line in (SPLITS / f"{split}.txt").read_text().splitlines() if line.strip()]
        assert len(ids) == len(expected) == count
        assert sorted(store.class_keys[i] for i in ids) == sorted(expected)
        assert (store.num_rows[ids] == 20).all()
    # strokes are bright on a dark background after inversion, and 28x28 keeps most of the ink
    pixels = store.pixels(np.arange(0, store.num_images, 997))
    assert pixels.mean() < 60 and pixels.max() == 255


def test_protonet_learns_on_real_omniglot(omniglot_store, tmp_path):
    torch.set_num_threads(1)
    # The reference reproduction's protocol: one 5-query episode per step
    cfg = config_mod.load("omniglot_protonet", ["steps=100", "runtime.backend=local", "eval.num_tasks=10",
                                                "checkpoint.every=1000", "task.num_query=5",
                                                "algorithm.meta_batch_size=1"])
    result = Trainer(config_mod.validate(cfg), tmp_path / "run", data_dir=str(omniglot_store)).run()
    # eval.ways / eval.query_per_class: trained 20-way with 5 queries, tested 5-way with 15
    assert result["ways"] == 5 and result["query_per_class"] == 15 and result["metric"] == "accuracy"
    from meta_dist import checkpoint

    ckpt = checkpoint.load_latest(tmp_path / "run")
    five_way = evaluate(cfg, ckpt.params, step=ckpt.step, data_dir=str(omniglot_store), num_tasks=300, ways=5, shots=1)
    print(json.dumps({k: five_way[k] for k in ("mean", "ci95", "tasks", "step")}))
    assert ckpt.step == 100
    assert five_way["mean"] >= MIN_ACCURACY, five_way


def test_background_split_and_within_alphabet_episodes(tmp_path_factory, tmp_path):
    store_dir = prepared(tmp_path_factory, "background")
    store = open_store(store_dir)
    alphabet = store.class_alphabets()
    by_split = {s: {alphabet[i] for i in store.split_classes(s)} for s in ("train", "val", "test")}
    assert [len(by_split[s]) for s in ("train", "val", "test")] == [26, 4, 20]
    assert not (by_split["train"] & by_split["val"]) and not (by_split["test"] & (by_split["train"] | by_split["val"]))
    val_characters = len(store.split_classes("val"))
    assert len(store.split_classes("test")) == 659 and len(store.split_classes("train")) == 4 * (964 - val_characters)

    run = tmp_path / "run"
    done = cli("train", "--config", "omniglot_lake_protonet", "--data", str(store_dir), "--steps", "20",
               "--backend", "local", "--run-dir", str(run), "--set", "eval.num_tasks=20")
    assert done.returncode == 0, done.stderr
    trained = json.loads((run / "eval.json").read_text())
    assert trained["ways"] == 20 and trained["shots"] == 1 and trained["within_alphabet"] is True
    assert trained["mean"] > 2 * 100 / 20  # above chance after 20 episodes
    again = cli("eval", "--run-dir", str(run), "--tasks", "20", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["curve"] == trained["curve"]  # the same episodes from eval as from train
