"""Scheduled faults (never random sleeps), each checked against the invariants, not "no crash":
the run completes every step, and in synchronous CPU mode its parameters are bitwise those of the
fault-free run with the same seed.
"""
import json
import logging
import os
import signal
import subprocess

import pyarrow.parquet as pq
import pytest

from meta_dist.errors import NonFiniteError
from meta_dist.runtime.faults import ENV
from tests.conftest import cli
from tests.helpers.runs import final_digest, train

pytestmark = pytest.mark.integration


def steps_of(run_dir):
    return pq.read_table(run_dir / "metrics.parquet").column("step").to_pylist()


def test_worker_killed_at_step_3_run_completes_bitwise(tmp_path, ray_local, reference, faults, caplog):
    once = faults({"kind": "kill", "worker": 1, "step": 3})
    with caplog.at_level(logging.WARNING, logger="meta_dist"):
        train(tmp_path / "run", "runtime.backend=ray", "runtime.num_workers=2")
    assert (once / "fault-0").exists(), "the scheduled kill did not fire"
    assert any("worker 1 lost during step 3" in r.getMessage() for r in caplog.records)
    assert steps_of(tmp_path / "run") == list(range(1, 13))
    assert final_digest(tmp_path / "run") == reference


def test_hung_chunk_gets_a_backup_and_the_first_result_wins(tmp_path, ray_local, reference, faults, caplog):
    faults({"kind": "hang", "worker": 0, "step": 2, "chunk": 0, "seconds": 6})
    with caplog.at_level(logging.WARNING, logger="meta_dist"):
        train(tmp_path / "run", "runtime.backend=ray", "runtime.num_workers=2", "runtime.chunk_timeout_s=1.5")
    assert any("x runtime.chunk_timeout_s) on worker 0; backup on worker 1" in r.getMessage()
               for r in caplog.records)
    assert steps_of(tmp_path / "run") == list(range(1, 13))
    assert final_digest(tmp_path / "run") == reference


def test_a_step_still_progressing_after_a_worker_loss_is_not_given_up_on(tmp_path, ray_local, reference, faults):
    """Worker 1 dies at step 3 after worker 0 has answered; its chunks go to worker 0, whose first of them
    takes 15 s. The step is waited for (runtime.stall_timeout_s, 600 s), not abandoned once the wait for
    actors to be placed (placement_timeout_s, here 10 s) has passed."""
    once = faults({"kind": "hang", "worker": 1, "step": 3, "chunk": 2, "seconds": 1},
                  {"kind": "kill", "worker": 1, "step": 3, "chunk": 3},
                  {"kind": "hang", "worker": 0, "step": 3, "chunk": 2, "seconds": 15})
    train(tmp_path / "run", "runtime.backend=ray", "runtime.num_workers=2", "runtime.placement_timeout_s=10")
    assert all((once / f"fault-{i}").exists() for i in range(3)), "a scheduled fault did not fire"
    assert steps_of(tmp_path / "run") == list(range(1, 13))
    assert final_digest(tmp_path / "run") == reference


def test_nan_chunk_is_skipped_recorded_and_never_reaches_parameters(tmp_path, faults):
    faults({"kind": "nan", "step": 3, "chunk": 1})
    result = train(tmp_path / "run", "runtime.backend=local")
    rows = pq.read_table(tmp_path / "run" / "metrics.parquet").to_pylist()
    assert rows[2]["step"] == 3 and rows[2]["bad_chunks"] == 1 and rows[2]["num_tasks"] == 20
    assert all(r["bad_chunks"] == 0 and r["num_tasks"] == 25 for r in rows if r["step"] != 3)
    assert result["nonfinite_tasks"] == 0 and result["mean"] == result["mean"]  # finite parameters


def test_nan_chunk_gives_the_same_result_on_ray_workers(tmp_path, ray_local, faults):
    faults({"kind": "nan", "step": 3, "chunk": 1})
    local = train(tmp_path / "local", "runtime.backend=local")
    ray2 = train(tmp_path / "ray", "runtime.backend=ray", "runtime.num_workers=2")
    assert local["params_sha256"] == ray2["params_sha256"]


def test_consecutive_non_finite_steps_abort_before_corrupting(tmp_path, faults):
    faults({"kind": "nan", "step": 4}, {"kind": "nan", "step": 5})
    with pytest.raises(NonFiniteError, match="2 consecutive meta-steps"):
        train(tmp_path / "run", "runtime.backend=local", "runtime.max_bad_steps=2")


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_driver_sigkilled_then_resumed_is_bitwise_identical(tmp_path, reference, backend):
    run_dir = tmp_path / "run"
    common = ["--steps", "12", "--set", "checkpoint.every=4", "--set", "eval.num_tasks=20",
              "--set", "eval.max_inner_steps=1", "--set", "runtime.chunk_size=5", "--backend", backend]
    if backend == "ray":
        common += ["--workers", "2"]
    plan = json.dumps({"once_dir": str(tmp_path / "once"), "faults": [{"kind": "kill_driver", "step": 10}]})
    killed = cli("train", "--run-dir", str(run_dir), *common, env={ENV: plan})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (run_dir / "eval.json").exists()
    assert steps_of(run_dir) == list(range(1, 9))  # metrics match the step-8 checkpoint
    resumed = cli("train", "--resume", "--run-dir", str(run_dir), *common)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from step_00000008" in resumed.stderr
    assert steps_of(run_dir) == list(range(1, 13))
    assert final_digest(run_dir) == reference


def test_sigterm_checkpoints_and_resume_continues(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [os.path.join(os.path.dirname(os.sys.executable), "meta-dist"), "train", "--backend", "local",
         "--steps", "100000", "--run-dir", str(run_dir), "--set", "checkpoint.every=100000"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
    for line in proc.stderr:  # wait until training is under way
        if line.startswith("step "):
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "continue with `meta-dist train --resume" in err
    ckpt_steps = [p.name for p in (run_dir / "checkpoints").iterdir()]
    assert len(ckpt_steps) == 1 and steps_of(run_dir)[-1] == int(ckpt_steps[0].split("_")[1])
