"""Meta-RL end to end: `meta-dist train` on the real Ray backend (2 workers, a few steps).

Runs the installed console script in a subprocess, as a user would, with the shipped configs
shrunk to seconds; checks the run-directory contract (every step in metrics.parquet, an eval.json
whose metric is "return") and, on the same tiny runs, that Ray and the in-process backend give
bitwise the same parameters.
"""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from meta_dist.runtime.faults import ENV
from tests.conftest import cli

pytestmark = pytest.mark.integration

STEPS = 3
TINY = {
    "navigation2d_maml": ["rl.horizon=20", "rl.num_episodes=4", "algorithm.meta_batch_size=4",
                          "runtime.chunk_size=2", "eval.num_tasks=4", "eval.max_inner_steps=1"],
    # RL^2 with PPO's epochs in each chunk (parameter changes averaged), the path Meta-World runs can take
    "bandits_rl2": ["algorithm.meta_batch_size=20", "runtime.chunk_size=10", "eval.num_tasks=100", "rl.ppo_epochs=3",
                    "algorithm.inner_lr=0.003", "algorithm.meta_optimizer=sgd", "algorithm.meta_lr=1.0"],
}
EVAL_TASKS = {"navigation2d_maml": 4, "bandits_rl2": 100}
# MAML-RL with the TRPO outer step: each chunk's step returned as a parameter change
TRPO = ["rl.max_kl=0.01", "algorithm.meta_optimizer=sgd", "algorithm.meta_lr=1.0", "algorithm.meta_lr_schedule=constant"]


def train(run_dir, config: str, backend: str, *extra: str, env: dict | None = None):
    sets = [x for item in TINY[config] + ["runtime.backend=" + backend, *extra] for x in ("--set", item)]
    proc = cli("train", "--config", config, "--steps", str(STEPS), "--run-dir", str(run_dir), *sets, timeout=240,
               env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((run_dir / "eval.json").read_text())


@pytest.mark.parametrize("config", ["navigation2d_maml", "bandits_rl2"])
def test_rl_training_through_ray_with_two_workers(tmp_path, config):
    extra = TRPO if config == "navigation2d_maml" else []
    result = train(tmp_path / "ray", config, "ray", "runtime.num_workers=2", *extra)
    steps = pq.read_table(tmp_path / "ray" / "metrics.parquet").column("step").to_pylist()
    assert steps == list(range(1, STEPS + 1))
    assert result["metric"] == "return" and result["step"] == STEPS
    assert result["tasks"] == EVAL_TASKS[config]
    low, high = (-1e4, 0.0) if config.startswith("navigation") else (0.0, 10.0)
    assert low < result["mean"] < high
    local = train(tmp_path / "local", config, "local", *extra)  # the chunks are reproducible wherever they run
    assert local["params_sha256"] == result["params_sha256"]


def test_a_killed_rollout_worker_costs_nothing_but_time(tmp_path):
    """The supervised runtime's fault handling, unchanged, on MAML-RL rollouts: the actor (worker 1; the
    driver is worker 0) is SIGKILLed during step 2, its tasks' rollouts are redone by the driver, and
    the parameters are bitwise those of the in-process run."""
    plan = json.dumps({"once_dir": str(tmp_path / "once"), "faults": [{"kind": "kill", "worker": 1, "step": 2}]})
    faulty = train(tmp_path / "ray", "navigation2d_maml", "ray", "runtime.num_workers=2", env={ENV: plan})
    assert (tmp_path / "once" / "fault-0").exists(), "the scheduled kill did not fire"
    assert pq.read_table(tmp_path / "ray" / "metrics.parquet").column("step").to_pylist() == list(range(1, STEPS + 1))
    assert faulty["params_sha256"] == train(tmp_path / "local", "navigation2d_maml", "local")["params_sha256"]
