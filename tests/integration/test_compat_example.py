"""The learn2learn-style Omniglot MAML example end to end, and the bridge on Ray: the same run with
tasks and a model from `l2l.bridge` has the same final parameters in one process and on 2 workers.

Both read the real Omniglot release (tests/conftest.py's OMNIGLOT_SOURCE) and skip without it. They
run from a temporary folder, as a user's script outside this repository does (the Ray workers then
import meta_dist from its installation), and give Ray a private temporary directory: `ray.init()`
joins the cluster recorded in the default one (the latest `ray start` on this machine, or another
test's cluster) instead of starting its own.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import pytest

from tests.conftest import OMNIGLOT_SOURCE, REPO

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not (OMNIGLOT_SOURCE / "images_background.zip").is_file(),
                                 reason=f"real Omniglot not found at {OMNIGLOT_SOURCE}")]

EXAMPLE = REPO / "examples" / "l2l_omniglot_maml.py"


@pytest.fixture
def ray_tmpdir():
    # Short on purpose: Ray's socket paths under it must stay below the 107-byte Unix limit.
    path = tempfile.mkdtemp(prefix="l2l", dir="/tmp")
    yield path
    subprocess.run(["rm", "-rf", path], check=False)


def test_example_runs_both_trainers(tmp_path, ray_tmpdir):
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_TMPDIR": ray_tmpdir,
           "META_DIST_OMNIGLOT": str(OMNIGLOT_SOURCE)}
    args = ["--iterations", "3", "--meta-batch-size", "2", "--test-tasks", "4", "--meta-dist-workers", "2",
            "--run-dir", str(tmp_path / "run")]
    proc = subprocess.run([sys.executable, str(EXAMPLE), *args], capture_output=True, text=True, timeout=240,
                          env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "classic loop: meta-test accuracy" in proc.stdout
    assert "meta-dist (2 workers): meta-test accuracy" in proc.stdout
    assert (tmp_path / "run" / "eval.json").is_file()


def bridge_components():
    """A small 5-way 1-shot taskset over 30 Omniglot characters and a narrow OmniglotCNN under MAML."""
    import torch
    from PIL import Image
    from torchvision import transforms

    from meta_dist.compat import l2l

    omniglot = l2l.vision.datasets.FullOmniglot(OMNIGLOT_SOURCE, transform=transforms.Compose([
        transforms.Resize(28, interpolation=Image.LANCZOS), transforms.ToTensor()]))
    dataset = l2l.data.MetaDataset(omniglot)
    train, test = (l2l.data.FilteredMetaDataset(dataset, labels) for labels in (range(0, 20), range(964, 974)))

    def tasks(ds):
        return l2l.data.TaskDataset(ds, [l2l.data.transforms.FusedNWaysKShots(ds, n=5, k=2),
                                         l2l.data.transforms.LoadData(ds), l2l.data.transforms.RemapLabels(ds),
                                         l2l.data.transforms.ConsecutiveLabels(ds)], num_tasks=100)

    torch.manual_seed(0)
    maml = l2l.algorithms.MAML(l2l.vision.models.OmniglotCNN(5, hidden_size=8), lr=0.4)
    family = l2l.bridge.TasksetFamily(tasks(train), splits={"test": tasks(test)})
    return family, l2l.bridge.model_factory(maml)


def test_bridge_params_are_the_same_in_one_process_and_on_two_workers(tmp_path, ray_tmpdir, monkeypatch):
    import ray

    import meta_dist

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAY_TMPDIR", ray_tmpdir)
    assert not ray.is_initialized()
    family, factory = bridge_components()
    overrides = factory.overrides() + ["algorithm.meta_batch_size=4", "runtime.chunk_size=2", "eval.num_tasks=4",
                                       "eval.inner_steps=1", "eval.max_inner_steps=1", "checkpoint.every=100"]
    results = {}
    for name, options in (("local", {"backend": "local"}), ("ray", {"workers": 2})):
        results[name] = meta_dist.train("omniglot_maml", task=family, model=factory, steps=3, seed=3,
                                        run_dir=tmp_path / name, overrides=overrides, **options)
    assert not ray.is_initialized()  # meta_dist.train shut down the Ray it started
    assert results["local"].eval["step"] == results["ray"].eval["step"] == 3
    assert results["local"].params_sha256 == results["ray"].params_sha256
    assert results["local"].eval["mean"] == results["ray"].eval["mean"]
