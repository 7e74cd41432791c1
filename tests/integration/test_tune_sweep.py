"""`meta-dist tune` on Ray Tune, as a user runs it: four trials of two workers each on a 2-CPU local Ray
(so they queue, one placement group at a time), interrupted with Ctrl-C and resumed to the end."""
from __future__ import annotations

import csv
import itertools
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from tests.conftest import REPO, cli

SWEEP = ["tune", "--search", "algorithm.inner_lr=loguniform(1e-3,1e-1)", "--search", "algorithm.meta_lr=choice(0.001,0.01)",
         "--trials", "4", "--workers", "2", "--steps", "40", "--report-every", "10", "--val-tasks", "20",
         "--set", "checkpoint.every=10", "--set", "eval.num_tasks=20", "--set", "eval.max_inner_steps=1"]


def results(run_dir: Path) -> list[dict]:
    with open(run_dir / "results.csv") as f:
        return list(csv.DictReader(f))


def interrupt_after_first_trial(run_dir: Path, log: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("meta-dist", path=str(Path(sys.executable).parent))
    with open(log, "w") as err:
        proc = subprocess.Popen([exe, *SWEEP, "--run-dir", str(run_dir)], stdout=subprocess.PIPE, stderr=err,
                                text=True, cwd=REPO, env={**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
        out = []
        for line in proc.stdout:  # Tune's progress report
            out.append(line)
            if " completed after " in line:
                proc.send_signal(signal.SIGINT)
                break
        rest, _ = proc.communicate(timeout=180)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "".join(out) + rest, log.read_text())


def test_four_two_worker_trials_queue_and_an_interrupted_sweep_resumes(tmp_path):
    run_dir = tmp_path / "sweep"
    first = interrupt_after_first_trial(run_dir, tmp_path / "first.log")
    assert first.returncode == 0, first.stderr
    assert "did not finish; continue them with the same command and --resume" in first.stderr
    before = results(run_dir)
    assert len(before) == 4 and sum(r["status"] == "completed" for r in before) >= 1

    resumed = cli(*SWEEP, "--run-dir", str(run_dir), "--resume", timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = results(run_dir)
    assert [r["trial"] for r in rows] == [r["trial"] for r in before]  # the same trials, not new samples
    assert {r["status"] for r in rows} <= {"completed", "stopped early"}
    assert {r["status"] for r in before} <= {"completed", "stopped early", "unfinished"}
    for old, new in zip(before, rows):
        assert new["algorithm.inner_lr"] == old["algorithm.inner_lr"]
        if old["status"] == "completed":  # finished trials are not run again
            assert new == old
    assert all(1e-3 <= float(r["algorithm.inner_lr"]) <= 1e-1 for r in rows)

    best = min((r for r in rows if r["val_mse"]), key=lambda r: float(r["val_mse"]))
    assert f"Best trial by val_mse (min): {best['trial']}" in (run_dir / "results.md").read_text()
    assert best["trial"] in resumed.stdout
    completed = [Path(r["run_dir"]) for r in rows if r["status"] == "completed"]
    assert all((d / "eval.json").is_file() for d in completed)
    # Trials queued: one 2-CPU placement group at a time, so no two trials trained at once.
    spans = []
    for r in rows:
        metrics = Path(r["run_dir"]) / "metrics.parquet"
        if metrics.exists():
            times = pq.read_table(metrics, columns=["wall_time"]).column(0).to_pylist()
            spans.append((min(times), max(times)))
    assert len(spans) >= 2
    assert all(a[1] < b[0] or b[1] < a[0] for a, b in itertools.combinations(spans, 2))


def test_a_bad_search_item_is_a_user_error_before_ray_starts(tmp_path):
    result = cli("tune", "--search", "algorithm.inner_lr=normal(0,1)", "--run-dir", str(tmp_path / "s"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "choose a distribution" in result.stderr and not (tmp_path / "s").exists()
