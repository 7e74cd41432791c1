"""The installed `meta-dist` command, run as a user runs it: the public contract and bad input."""
import json
import time

import pyarrow.parquet as pq
import pytest
import torch

from tests.conftest import cli

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    proc = cli("train", "--steps", "30", "--workers", "2", "--run-dir", str(run_dir),
               "--set", "checkpoint.every=10", "--set", "eval.num_tasks=50")
    assert proc.returncode == 0, proc.stderr
    return run_dir, proc


def test_train_writes_the_run_directory_contract(trained):
    run_dir, proc = trained
    for name in ("config.yaml", "metrics.parquet", "eval.json", "curve.png"):
        assert (run_dir / name).is_file(), name
    table = pq.read_table(run_dir / "metrics.parquet")
    assert {"step", "num_tasks", "step_time_s", "meta_loss", "wall_time"} <= set(table.column_names)
    assert table.column("step").to_pylist() == list(range(1, 31))
    assert set(table.column("num_tasks").to_pylist()) == {25}
    ckpts = sorted((run_dir / "checkpoints").iterdir())
    state = torch.load(ckpts[-1] / "state.pt", weights_only=True)
    assert state["step"] == 30
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["metric"] == "mse" and result["step"] == 30 and result["tasks"] == 50
    assert len(result["params_sha256"]) == 64 and result["ci95"] > 0
    assert "after  1 steps" in proc.stderr and "reference:" in proc.stderr


def test_eval_json_prints_exactly_one_object_matching_train(trained):
    run_dir, _ = trained
    proc = cli("eval", "--run-dir", str(run_dir), "--json", "--tasks", "50")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert {"metric", "mean", "ci95", "tasks", "step", "params_sha256"} <= set(result)
    saved = json.loads((run_dir / "eval.json").read_text())
    assert result["params_sha256"] == saved["params_sha256"] and result["mean"] == saved["mean"]


def test_eval_on_two_workers_gives_the_one_process_result_bitwise(trained):
    """Its own local Ray: the driver computes as worker 0 beside one actor."""
    from meta_dist import api

    run_dir, _ = trained
    proc = cli("eval", "--run-dir", str(run_dir), "--json", "--tasks", "150", "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert "evaluation: 150/150 episodes" in proc.stderr
    assert json.loads(proc.stdout)["curve"] == api.evaluate(run_dir, tasks=150)["curve"]


def test_resume_finished_run_to_more_steps_continues_the_step_sequence(trained, tmp_path):
    run_dir, _ = trained
    proc = cli("train", "--resume", "--run-dir", str(run_dir), "--steps", "35", "--backend", "local",
               "--set", "eval.num_tasks=20")
    assert proc.returncode == 0, proc.stderr
    steps = pq.read_table(run_dir / "metrics.parquet").column("step").to_pylist()
    assert steps == list(range(1, 36))


@pytest.mark.parametrize("args, message", [
    (["train", "--set", "algorithm.inner_lrr=0.1"], "unknown config key 'algorithm.inner_lrr'"),
    (["train", "--set", "steps=ten"], "must be an integer"),
    (["train", "--steps", "-3"], "'steps' must be positive"),
    (["train", "--set", "task.ways=0"], "'task.ways' must be positive"),
    (["train", "--config", "/no/such/file.yaml"], "does not exist"),
    (["train", "--config", "no_such_name"], "no config named"),
    (["train", "--resume", "--run-dir", "{tmp}/empty"], "nothing to resume"),
    (["train", "--address", "127.0.0.1:1", "--run-dir", "{tmp}/r"], "cannot reach a Ray cluster"),
    (["train", "--address", "not-an-address", "--run-dir", "{tmp}/r"], "is not HOST:PORT"),
    (["eval", "--run-dir", "{tmp}/missing"], "not a meta-dist run directory"),
    (["eval", "--run-dir", "{tmp}/empty", "--workers", "2", "--backend", "local"], "needs --backend ray"),
])
def test_bad_input_is_one_line_exit_2(args, message, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.yaml").write_text("steps: 5\n")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    proc = cli(*args, timeout=60)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr, proc.stderr


def test_more_workers_than_the_cluster_can_place_fails_fast(tmp_path):
    start = time.monotonic()
    proc = cli("train", "--workers", "64", "--run-dir", str(tmp_path / "r"), timeout=120)
    assert proc.returncode == 2
    # On its own local Ray the driver is worker 0, so 63 actors are asked for.
    assert "63 worker actors x 1 threads (worker 0 is the driver itself) need 63 CPUs but the Ray cluster has" \
        in proc.stderr.strip().splitlines()[-1]
    assert time.monotonic() - start < 90


def test_existing_run_is_never_overwritten(trained):
    run_dir, _ = trained
    before = (run_dir / "metrics.parquet").read_bytes()
    proc = cli("train", "--steps", "5", "--run-dir", str(run_dir), "--backend", "local")
    assert proc.returncode == 2 and "already holds a run" in proc.stderr
    assert (run_dir / "metrics.parquet").read_bytes() == before
