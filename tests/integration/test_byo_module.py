"""Bring your own model and task family: a module in a plain, uninstalled folder, named by import path in
YAML, trains from that folder on 2 Ray workers, in one process, and through `meta_dist.train` with objects,
all to the same parameters; its mistakes are one-line errors and its exceptions stop the run once."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import cli

pytestmark = pytest.mark.integration
BYO = Path(__file__).resolve().parents[1] / "helpers" / "byo"


@pytest.fixture
def project(tmp_path) -> Path:
    """The user's folder: their module and config, nothing else, importable only from here."""
    folder = tmp_path / "project"
    folder.mkdir()
    for name in ("my_tasks.py", "my.yaml"):
        shutil.copy(BYO / name, folder / name)
    return folder


def digest(run_dir: Path) -> str:
    return json.loads((run_dir / "eval.json").read_text())["params_sha256"]


def test_user_module_trains_the_same_on_ray_in_one_process_and_from_python(project, monkeypatch):
    ray2 = cli("train", "--config", "my.yaml", "--workers", "2", "--run-dir", "runs/ray2", cwd=project)
    assert ray2.returncode == 0, ray2.stderr[-3000:]
    local = cli("train", "--config", "my.yaml", "--backend", "local", "--run-dir", "runs/local", cwd=project)
    assert local.returncode == 0, local.stderr[-3000:]

    monkeypatch.chdir(project)
    monkeypatch.syspath_prepend(str(project))
    import meta_dist
    from my_tasks import Blobs, bn_net

    result = meta_dist.train("my.yaml", task=Blobs(ways=3, shots=5), model=bn_net, workers=2,
                             run_dir="runs/api", overrides={"model.kwargs": {"hidden": 32}})
    sys.modules.pop("my_tasks", None)
    assert digest(project / "runs/ray2") == digest(project / "runs/local") == result.params_sha256
    # It learns: the meta-loss falls, and one adaptation step lifts accuracy far above chance (33%).
    loss = pq.read_table(project / "runs/local/metrics.parquet").column("meta_loss").to_pylist()
    assert sum(loss[-6:]) < 0.8 * sum(loss[:6])
    curve = result.eval["curve"]
    assert curve[0]["mean"] < 50 and curve[1]["mean"] > 80
    assert json.loads((project / "runs/api/run.json").read_text())["objects"] == ["task"]
    assert "my_tasks:Blobs" in (project / "runs/api/config.yaml").read_text()


def test_an_exception_in_user_code_on_a_worker_stops_the_run_once(project):
    done = cli("train", "--config", "my.yaml", "--workers", "2", "--set", "task.kwargs.fail_at_step=3",
               "--set", "runtime.driver_worker=false", "--run-dir", "runs/fail", cwd=project, timeout=240)
    assert done.returncode == 1, done.stderr[-3000:]
    assert done.stderr.count("boom from my_tasks at step 3") == 1, done.stderr[-4000:]
    assert "my_tasks.py" in done.stderr and "in materialize" in done.stderr  # the user's own frames
    assert "not retried" in done.stderr
    steps = pq.read_table(project / "runs/fail/metrics.parquet").column("step").to_pylist() \
        if (project / "runs/fail/metrics.parquet").exists() else []
    assert 3 not in steps


@pytest.mark.parametrize("override, words", [
    ("task.name=my_nope:Blobs", "module 'my_nope' was not found"),
    ("task.name=my_tasks:Nope", "has no attribute 'Nope'"),
    ("task.name=my_tasks:NOT_A_FAMILY", "not a meta_dist.TaskFamily"),
    ("model.name=my_tasks:wrong_width", "returned shape (15, 4)"),
    ("task.name=my_tasks:Unseeded", "gave different tasks for the same"),
    ("task.name=my tasks", "import path"),
])
def test_bad_user_components_are_one_line_errors_that_write_nothing(project, override, words):
    extra = ["--set", "model.kwargs={}"] if "wrong_width" in override else []  # it takes no `hidden`
    done = cli("train", "--config", "my.yaml", "--backend", "local", "--set", override, *extra,
               "--run-dir", "runs/bad", cwd=project)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("meta-dist: error:") and words in lines[0], done.stderr
    assert not (project / "runs").exists()


def test_the_module_trains_on_a_two_node_cluster_through_submit(project, tmp_path):
    """A head and a second node on loopback, Jobs API on the head; the module exists only in the
    submitting folder, and each worker actor lands on its own node."""
    from tests.helpers.cluster import two_node_cluster

    local = cli("train", "--config", "my.yaml", "--backend", "local", "--run-dir", "runs/local", cwd=project)
    assert local.returncode == 0, local.stderr[-3000:]
    run_dir = tmp_path / "cluster_run"
    with two_node_cluster(head_cpus=1, node_cpus=1) as url:
        done = cli("submit", "--address", url, "--follow", "--config", "my.yaml", "--workers", "2",
                   "--run-dir", str(run_dir), cwd=project, timeout=400)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "SUCCEEDED" in done.stdout
    assert digest(run_dir) == digest(project / "runs/local")
