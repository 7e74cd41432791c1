"""Your own data, end to end on real images: an ImageFolder tree of Omniglot drawings (raw 105x105 PNGs)
becomes a store, ProtoNet trains on it with `task.name=images`, and `meta-dist predict` labels raw files of
classes never seen in training; ResNet-12 and a torchvision ResNet-18 train on the same store."""
from __future__ import annotations

import json
import math
import shutil
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import OMNIGLOT_SOURCE, cli

pytestmark = pytest.mark.integration
NUM_CHARACTERS = 150  # x 20 drawers: 3000 PNG files
TORCHVISION_NET = '''
"""A torchvision network as a meta-dist model factory: ResNet-18 (random init), its stem made for
small grey images, its classifier the task's head (none for an embedding network)."""
import torchvision
from torch import nn


def resnet18(input_shape, output_dim):
    net = torchvision.models.resnet18(weights=None)
    net.conv1 = nn.Conv2d(input_shape[0], 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    net.fc = nn.Linear(512, output_dim) if output_dim else nn.Identity()
    return net
'''


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    """One sub-folder per Omniglot character, holding its original drawings as PNG files."""
    source = OMNIGLOT_SOURCE / "images_background.zip"
    if not source.is_file():
        pytest.skip(f"real Omniglot not found at {OMNIGLOT_SOURCE}")
    root = tmp_path_factory.mktemp("folder") / "characters"
    with zipfile.ZipFile(source) as z:
        members = sorted(m for m in z.namelist() if m.endswith(".png"))
        characters = sorted({tuple(m.split("/")[1:3]) for m in members})[:: 964 // NUM_CHARACTERS][:NUM_CHARACTERS]
        wanted = {f"images_background/{a}/{c}/" for a, c in characters}
        for member in members:
            prefix = member.rsplit("/", 1)[0] + "/"
            if prefix in wanted:
                alphabet, character, name = member.split("/")[1:]
                target = root / f"{alphabet}-{character}" / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(z.read(member))
    return root


@pytest.fixture(scope="module")
def folder_store(image_folder) -> Path:
    out = image_folder.parent / "store"
    done = cli("data", "prepare", "folder", "--source", str(image_folder), "--out", str(out), "--image-size", "28",
               "--grayscale", "--split-ratios", "0.7,0.1,0.2", "--seed", "3")
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def _test_classes(store: Path) -> list[str]:
    table = pq.read_table(store / "classes.parquet").to_pydict()
    return sorted(k for k, s in zip(table["class_key"], table["split"]) if s == "test")


def test_protonet_on_a_folder_store_predicts_unseen_classes(image_folder, folder_store, tmp_path):
    run_dir = tmp_path / "run"
    done = cli("train", "--config", "omniglot_protonet", "--data", str(folder_store), "--set", "task.name=images",
               "--steps", "120", "--set", "eval.num_tasks=100", "--backend", "local", "--run-dir", str(run_dir),
               timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # 120 steps, not a time budget: the same run on any machine (here 90.4%, and 86 of the 95 files right)
    assert json.loads((run_dir / "eval.json").read_text())["mean"] > 80.0  # 5-way 1-shot, chance 20%

    support, query, truth = tmp_path / "support", tmp_path / "query", {}
    for name in _test_classes(folder_store)[:5]:
        files = sorted((image_folder / name).glob("*.png"))
        (support / name).mkdir(parents=True)
        shutil.copy(files[0], support / name / files[0].name)  # one shot of each new class
        query.mkdir(exist_ok=True)
        for f in files[1:]:
            shutil.copy(f, query / f.name)
            truth[f.name] = name
    done = cli("predict", "--run-dir", str(run_dir), "--support", str(support), "--query", str(query), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    predictions = {Path(p["file"]).name: p["class"] for p in result["predictions"]}
    assert set(predictions) == set(truth) and len(truth) == 5 * 19
    accuracy = sum(predictions[f] == c for f, c in truth.items()) / len(truth)
    assert accuracy > 0.6, accuracy  # chance: 0.2
    assert result["shots"] == {name: 1 for name in _test_classes(folder_store)[:5]}

    bad = cli("predict", "--run-dir", str(run_dir), "--support", str(query), "--query", str(query))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "class folder" in bad.stderr


@pytest.mark.parametrize("model", ["resnet12", "torchvision"])
def test_resnet12_and_a_torchvision_model_train_on_the_store(folder_store, tmp_path, model):
    (tmp_path / "tv_nets.py").write_text(TORCHVISION_NET)
    name = ["--set", "model.name=resnet12", "--set", "model.kwargs={widths: [8, 16, 32, 64]}"] \
        if model == "resnet12" else ["--set", "model.name=tv_nets:resnet18"]
    done = cli("train", "--config", "omniglot_protonet", "--data", str(folder_store), "--set", "task.name=images",
               *name, "--steps", "4", "--set", "task.ways=5", "--set", "eval.num_tasks=10", "--backend", "local",
               "--run-dir", "run", cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    loss = pq.read_table(tmp_path / "run" / "metrics.parquet").column("meta_loss").to_pylist()
    assert len(loss) == 4 and all(math.isfinite(v) and v > 0 for v in loss)
    result = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert result["tasks"] == 10 and 0 <= result["mean"] <= 100
