"""Meta-World end to end: `meta-dist train --config metaworld_ml1_reach_rl2`, shrunk to seconds, as a user
runs it, on the real Ray backend and in process. A worker SIGKILLed mid-run and a driver SIGKILLed and
resumed both end on the parameters of the uninterrupted in-process run, bit for bit; eval.json and
run.json carry the success metric, the per-environment figures and the versions."""
from __future__ import annotations

import json
import signal

import pyarrow.parquet as pq
import pytest

from meta_dist.runtime.faults import ENV
from tests.conftest import cli

pytestmark = pytest.mark.integration

STEPS = 4
TINY = ["rl.horizon=20", "rl.num_episodes=2", "algorithm.meta_batch_size=4", "runtime.chunk_size=2",
        "eval.num_tasks=4", "eval.train_tasks=2", "eval.inner_steps=1", "eval.max_inner_steps=1",
        "checkpoint.every=2"]


def train(run_dir, *extra: str, env: dict | None = None, resume: bool = False):
    sets = [x for item in TINY for x in ("--set", item)]
    cache = {"META_DIST_CACHE_DIR": str(run_dir.parent.parent / "cache")}  # Meta-World's task lists, not in ~
    return cli("train", "--config", "metaworld_ml1_reach_rl2", "--steps", str(STEPS), "--run-dir", str(run_dir),
               *sets, *extra, *(["--resume"] if resume else []), timeout=300, env={**cache, **(env or {})})


def steps_of(run_dir) -> list[int]:
    return pq.read_table(run_dir / "metrics.parquet").column("step").to_pylist()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("metaworld") / "local"
    proc = train(run_dir, "--backend", "local")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((run_dir / "eval.json").read_text())


def test_the_run_records_success_per_environment_and_the_versions(tmp_path, reference):
    assert reference["metric"] == "success" and reference["unit"] == "%" and reference["step"] == STEPS
    assert set(reference["per_task"]) == {"reach-v3"} and reference["tasks"] == 4
    assert reference["train_split"]["tasks"] == 2
    assert reference["reward_version"] == "v2" and reference["metaworld_version"].startswith("3.1")


def test_a_killed_worker_costs_nothing_but_time(tmp_path, reference):
    plan = json.dumps({"once_dir": str(tmp_path / "once"), "faults": [{"kind": "kill", "worker": 1, "step": 2}]})
    proc = train(tmp_path / "ray", "--backend", "ray", "--workers", "2", env={ENV: plan})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "once" / "fault-0").exists(), "the scheduled kill did not fire"
    assert steps_of(tmp_path / "ray") == list(range(1, STEPS + 1))
    result = json.loads((tmp_path / "ray" / "eval.json").read_text())
    assert result["params_sha256"] == reference["params_sha256"]
    assert result["mean"] == reference["mean"] and result["per_task"] == reference["per_task"]
    run = json.loads((tmp_path / "ray" / "run.json").read_text())
    assert run["environment"] == {"metaworld_version": reference["metaworld_version"], "reward_version": "v2"}


def test_a_killed_driver_resumes_to_the_same_parameters(tmp_path, reference):
    run_dir = tmp_path / "run"
    plan = json.dumps({"once_dir": str(tmp_path / "once"), "faults": [{"kind": "kill_driver", "step": 3}]})
    killed = train(run_dir, "--backend", "ray", "--workers", "2", env={ENV: plan})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert steps_of(run_dir) == [1, 2] and not (run_dir / "eval.json").exists()
    resumed = train(run_dir, "--backend", "ray", "--workers", "2", resume=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert steps_of(run_dir) == list(range(1, STEPS + 1))
    assert json.loads((run_dir / "eval.json").read_text())["params_sha256"] == reference["params_sha256"]
