"""End to end: `meta-dist submit --follow` trains through a real Ray job on a loopback head.

The job runs `python -m meta_dist.job ...` in a shipped copy of the submitting folder; the run directory
is a local path, which every "node" of a one-machine cluster shares. Checks the public contract:
exit code 0 only for a SUCCEEDED job, metrics.parquet with steps 1..N, a loadable checkpoint; and
that a bad config fails the job with the one-line error in its logs, not a traceback.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest

cli = pytest.importorskip(
    "meta_dist.cli", reason="meta_dist.cli is not importable yet (the CLI is written separately)")

from meta_dist.runtime import jobs_address, jobs_client  # noqa: E402 - after the skip check on purpose
from tests.helpers.jobs import Head  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
STEPS = 50


def _job_for_run_dir(url: str, run_dir: Path):
    client, _ = jobs_address.connect(url)
    jobs = [j for j in client.list_jobs() if str(run_dir) in (j.entrypoint or "")]
    assert len(jobs) == 1, [j.entrypoint for j in jobs]
    return jobs[0]


@pytest.mark.integration
@pytest.mark.slow
def test_submit_follow_trains_and_leaves_a_loadable_run(ray_head: Head, tmp_path: Path,
                                                        capfd: pytest.CaptureFixture) -> None:
    import pyarrow.parquet as pq
    import torch

    from meta_dist.checkpoint import load_latest

    run_dir = tmp_path / "sinusoid_run"
    rc = cli.main(["submit", "--address", ray_head.url, "--follow", "--config", "sinusoid_maml",
                   "--steps", str(STEPS), "--run-dir", str(run_dir)])
    out, err = capfd.readouterr()
    assert rc == 0, out[-4000:] + err[-2000:]
    assert "SUCCEEDED" in out
    assert _job_for_run_dir(ray_head.url, run_dir).status.value == "SUCCEEDED"

    steps = pq.read_table(run_dir / "metrics.parquet").column("step").to_pylist()
    assert steps == list(range(1, STEPS + 1))
    assert (run_dir / "checkpoints").is_dir()
    ckpt = load_latest(run_dir)
    assert ckpt is not None and ckpt.step == STEPS
    assert ckpt.params and all(isinstance(t, torch.Tensor) for t in ckpt.params.values())
    assert all(bool(torch.isfinite(t).all()) for t in ckpt.params.values())
    assert math.isfinite(float(pq.read_table(run_dir / "metrics.parquet")
                               .column("meta_loss").to_pylist()[-1]))


@pytest.mark.integration
def test_submit_with_a_storage_uri_uploads_the_run_directory(ray_head: Head, tmp_path: Path,
                                                              capfd: pytest.CaptureFixture) -> None:
    import pyarrow.parquet as pq

    storage = tmp_path / "bucket" / "prefix"
    rc = cli.main(["submit", "--address", ray_head.url, "--follow", "--storage", storage.as_uri(),
                   "--config", "sinusoid_maml", "--steps", "5"])
    out, err = capfd.readouterr()
    assert rc == 0, out[-4000:] + err[-2000:]
    (uploaded,) = list(storage.iterdir())  # one run directory, named after the job id
    assert uploaded.name.startswith("meta-dist-sinusoid_maml-")
    assert f"submitted job {uploaded.name}" in out
    steps = pq.read_table(uploaded / "metrics.parquet").column("step").to_pylist()
    assert steps == [1, 2, 3, 4, 5]
    assert (uploaded / "checkpoints").is_dir()


@pytest.mark.integration
def test_bad_config_fails_the_job_with_a_one_line_error(ray_head: Head, tmp_path: Path,
                                                        capfd: pytest.CaptureFixture) -> None:
    run_dir = tmp_path / "bad_run"
    # Straight through the jobs client: whatever the CLI may check before submitting, the job
    # itself must reject the config and say why in its logs.
    rc = jobs_client.submit(["--config", "sinusoid_maml", "--set", "nonsense.key=1",
                             "--run-dir", str(run_dir)],
                            ray_head.url, follow=True, storage=None, working_dir=REPO_ROOT)
    out, _ = capfd.readouterr()
    assert rc == 1, out[-4000:]
    assert "Traceback" not in out
    job = _job_for_run_dir(ray_head.url, run_dir)
    assert job.status.value == "FAILED"
    logs = jobs_address.connect(ray_head.url)[0].get_job_logs(job.submission_id)
    assert _config_error_lines(logs) == _config_error_lines(out)
    assert len(_config_error_lines(logs)) == 1, logs[-3000:]

    # The same through `meta-dist submit`: non-zero, and the message reaches the user.
    rc = cli.main(["submit", "--address", ray_head.url, "--follow", "--config", "sinusoid_maml",
                   "--set", "nonsense.key=1", "--run-dir", str(tmp_path / "bad_run_cli")])
    out, err = capfd.readouterr()
    assert rc != 0
    assert len(_config_error_lines(out + err)) == 1


def _config_error_lines(text: str) -> list[str]:
    """The CLI's one-line user errors that name the bad key (config.py words an unknown section
    as "'nonsense' is not a config section" and an unknown leaf as "unknown config key")."""
    return [line for line in text.splitlines()
            if line.startswith("meta-dist: error:") and "nonsense" in line
            and ("unknown config key" in line or "not a config section" in line)]


@pytest.mark.integration
def test_bench_runs_as_a_ray_job_and_prints_its_json_report(ray_head: Head, capfd: pytest.CaptureFixture) -> None:
    import json

    entrypoint = "python jobs/bench.py --config sinusoid_maml --workers 1,2 --duration-s 1 --json"
    rc = jobs_client.submit([], ray_head.url, follow=True, storage=None, working_dir=REPO_ROOT, entrypoint=entrypoint)
    out, err = capfd.readouterr()
    assert rc == 0, out[-4000:] + err[-2000:]
    (line,) = [line for line in out.splitlines() if line.startswith('{"workload"')]
    report = json.loads(line)
    assert [r["workers"] for r in report["results"]] == [1, 2]
    assert all(r["tasks_per_s"] > 0 for r in report["results"]) and report["reference_tasks_per_s"] > 0
    # A job joins the head's cluster: every worker is an actor, on the driver's node, so each actor is
    # reached through its compiled channel.
    assert not report["workload"]["driver_worker"] and report["workload"]["compiled_graph"]
    assert [r["compiled_channels"] for r in report["results"]] == [1, 2]
