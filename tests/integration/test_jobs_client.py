"""The Ray Jobs client (meta_dist.runtime.jobs_client, jobs_address) and the job entry point
(meta_dist.job), with no Ray cluster: address checks fail fast with one-line UserErrors, the
entrypoint and runtime_env are built as documented, --storage maps to the run directory.
tests/integration/test_jobs_client_head.py submits jobs to a real Ray head.
"""
from __future__ import annotations

import http.server
import shlex
import threading
import time
from pathlib import Path

import pytest

from meta_dist.errors import UserError
from meta_dist.runtime import jobs_address, jobs_client
from tests.helpers.jobs import free_port, one_line


def _load_jobs_train():
    from meta_dist import job

    return job


@pytest.mark.parametrize("address", ["127.0.0.1:6379", "ray://127.0.0.1:10001", "auto",
                                     "http://", "ftp://127.0.0.1:8265"])
def test_non_http_address_is_a_user_error(address: str) -> None:
    with pytest.raises(UserError, match="must be the HTTP URL"):
        jobs_address.resolve_address(address)


def test_unreachable_address_fails_fast_with_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    calls = {
        "submit": lambda: jobs_client.submit(["--steps", "1"], url, follow=True, storage=None,
                                             working_dir=tmp_path),
        "list": lambda: jobs_client.list_jobs(url),
        "status": lambda: jobs_client.status(url, "some-job"),
        "logs": lambda: jobs_client.logs(url, "some-job", follow=True),
        "stop": lambda: jobs_client.stop(url, "some-job"),
    }
    for name, call in calls.items():
        start = time.monotonic()
        with pytest.raises(UserError) as info:
            call()
        assert time.monotonic() - start < 5, name
        message = one_line(info.value)
        assert f"cannot reach the Ray Jobs API at {url}" in message, name
        assert "cluster/local.sh start" in message, name


def test_http_server_that_is_not_ray_is_rejected() -> None:
    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass  # keep test output clean

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(UserError, match="HTTP 404 .* not a Ray Jobs API") as info:
            jobs_client.list_jobs(f"http://127.0.0.1:{server.server_address[1]}")
        one_line(info.value)
    finally:
        server.shutdown()
        thread.join()


def test_explicit_address_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:9999/")
    assert jobs_address.resolve_address("http://127.0.0.1:8265/") == "http://127.0.0.1:8265"
    assert jobs_address.resolve_address(None) == "http://127.0.0.1:9999"
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")  # a GCS address: not for the Jobs API
    assert jobs_address.resolve_address(None) == jobs_address.DEFAULT_ADDRESS
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "http://127.0.0.1:7777")
    assert jobs_address.resolve_address(None) == "http://127.0.0.1:7777"


def test_entrypoint_runs_the_job_module_with_quoted_args() -> None:
    args = ["--config", "sinusoid_maml", "--set", "algorithm.inner_lr=0.01", "--run-dir",
            "/shared/my runs/a"]
    entrypoint = jobs_client.build_entrypoint(args)
    assert entrypoint.startswith("python -m meta_dist.job ")
    assert shlex.split(entrypoint) == ["python", "-m", "meta_dist.job", *args]


def test_storage_sets_the_run_directory() -> None:
    base = ["--config", "sinusoid_maml"]
    assert jobs_client.apply_storage(base, None, "job1") == base
    assert jobs_client.apply_storage(base, "/shared/runs/", "job1") == [
        *base, "--run-dir", "/shared/runs/job1"]
    assert jobs_client.apply_storage(base, "s3://bucket/prefix", "job1") == [
        *base, "--storage", "s3://bucket/prefix/job1"]
    with pytest.raises(UserError, match="absolute path"):
        jobs_client.apply_storage(base, "runs", "job1")
    for run_dir in (["--run-dir", "/x"], ["--run-dir=/x"]):
        with pytest.raises(UserError, match="--storage and --run-dir"):
            jobs_client.apply_storage([*base, *run_dir], "/shared", "job1")


def test_runtime_env_ships_code_without_installing_deps(tmp_path: Path) -> None:
    env = jobs_client.build_runtime_env(tmp_path)
    assert env["working_dir"] == str(tmp_path)
    assert "env_vars" not in env  # jobs inherit the head's environment (loopback or cluster address)
    assert {".git", ".venv", "__pycache__", "*.parquet"} <= set(env["excludes"])
    assert "pip" not in env
    with pytest.raises(UserError, match="pyproject.toml"):
        jobs_client.build_runtime_env(tmp_path, install_deps=True)
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = ["torch>=2.4", "pyyaml"]\n')
    assert jobs_client.build_runtime_env(tmp_path, install_deps=True)["pip"] == [
        "torch>=2.4", "pyyaml"]


def test_job_ids_are_readable_and_unique() -> None:
    a = jobs_client.new_job_id(["--config", "jobs/configs/omniglot_maml.yaml"])
    b = jobs_client.new_job_id(["--config", "jobs/configs/omniglot_maml.yaml"])
    assert a.startswith("meta-dist-omniglot_maml-") and a != b
    assert jobs_client.new_job_id([]).startswith("meta-dist-default-")


def test_submit_checks_its_arguments_before_any_network(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="either entrypoint or train_args"):
        jobs_client.submit(["--steps", "1"], "http://127.0.0.1:1", False, None, tmp_path,
                           entrypoint="echo hi")
    with pytest.raises(UserError, match="does not exist"):
        jobs_client.submit([], "http://127.0.0.1:1", False, None, tmp_path / "missing")
    with pytest.raises(UserError, match="job id"):
        jobs_client.submit([], "http://127.0.0.1:1", False, None, tmp_path, job_id="../x")


def test_jobs_train_splits_storage_and_uploads_run_dir(tmp_path: Path) -> None:
    train = _load_jobs_train()
    assert train.pop_flag(["--steps", "5", "--storage", "s3://b/p", "--seed", "1"],
                          "--storage") == ("s3://b/p", ["--steps", "5", "--seed", "1"])
    assert train.pop_flag(["--storage=file:///x"], "--storage") == ("file:///x", [])
    assert train.pop_flag(["--steps", "5"], "--storage") == (None, ["--steps", "5"])
    with pytest.raises(ValueError, match="needs a value"):
        train.pop_flag(["--storage"], "--storage")

    run_dir = tmp_path / "run"
    (run_dir / "checkpoints" / "step_00000005").mkdir(parents=True)
    (run_dir / "checkpoints" / "step_00000005" / "params.pt").write_bytes(b"\x00" * 64)
    (run_dir / "metrics.parquet").write_bytes(b"PAR1")
    (run_dir / "config.yaml").write_text("seed: 1\n")
    dest = tmp_path / "bucket" / "prefix" / "job1"
    train.upload_run_dir(run_dir, dest.as_uri())
    copied = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert copied == ["checkpoints/step_00000005/params.pt", "config.yaml", "metrics.parquet"]
