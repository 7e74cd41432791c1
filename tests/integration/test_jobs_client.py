"""The Ray Jobs client (meta_dist.runtime.jobs_client) and the job entry point (meta_dist.job).

The first half needs no Ray cluster: address checks fail fast with one-line UserErrors, the
entrypoint and runtime_env are built as documented, --storage maps to the run directory. The
second half (marked `integration`) starts one Ray head on loopback for the module, in its own
process group with its own ports and temp dir, submits tiny jobs through the real API, and kills
exactly the processes it started.
"""
from __future__ import annotations

import contextlib
import http.server
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from meta_dist.errors import UserError
from meta_dist.runtime import jobs_client

REPO_ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue  # the process exited while we listed /proc
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def _descendants(pid: int) -> list[int]:
    children, found, stack = _children_map(), [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _signal_all(pgid: int, pids: list[int], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _kill_tree(proc: subprocess.Popen) -> None:
    """Stop the `ray start --block` process, everything it spawned (GCS, raylet, dashboard,
    workers, job drivers: all descendants, whatever their process group) and its group."""
    pids = [proc.pid, *_descendants(proc.pid)]
    _signal_all(proc.pid, pids, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    _signal_all(proc.pid, [p for p in pids if _alive(p)], signal.SIGKILL)
    proc.wait(timeout=30)


def _rmtree_tolerating_vanished(path: str) -> None:
    def onerror(func, p, exc_info):  # noqa: ANN001 - shutil's callback signature
        if not issubclass(exc_info[0], FileNotFoundError):
            raise exc_info[1]

    shutil.rmtree(path, onerror=onerror)


@contextlib.contextmanager
def loopback_head(num_cpus: int = 2, ready_timeout_s: float = 180.0,
                  extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """A Ray head on 127.0.0.1 with free ports and a short private temp dir; yields its Jobs URL.

    Jobs' `python` resolves to this venv's interpreter (its bin goes first on the head's PATH).
    `extra_env` goes to every Ray process (e.g. RAY_AUTH_MODE / RAY_AUTH_TOKEN)."""
    ray_bin = Path(sys.executable).parent / "ray"
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # Unix socket paths must stay short
    dashboard_port = free_port()
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
           "PATH": f"{ray_bin.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        env.pop(name, None)
    env.update(extra_env or {})
    token = env.get("RAY_AUTH_TOKEN") if env.get("RAY_AUTH_MODE") == "token" else None
    probe = urllib.request.Request(f"http://127.0.0.1:{dashboard_port}/api/version",
                                   headers={"Authorization": f"Bearer {token}"} if token else {})
    cmd = [str(ray_bin), "start", "--head", "--block", f"--num-cpus={num_cpus}",
           "--node-ip-address=127.0.0.1", f"--port={free_port()}",
           "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
           f"--ray-client-server-port={free_port()}",
           f"--dashboard-agent-listen-port={free_port()}",
           f"--temp-dir={temp_dir}", "--disable-usage-stats"]
    log_path = Path(temp_dir) / "ray-start.log"
    url = f"http://127.0.0.1:{dashboard_port}"
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ray start exited with {proc.returncode}:\n"
                                   f"{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(probe, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass  # not listening yet: keep polling until the deadline
            if time.monotonic() > deadline:
                raise RuntimeError(f"Ray head not ready after {ready_timeout_s} s:\n"
                                   f"{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        _kill_tree(proc)
        _rmtree_tolerating_vanished(temp_dir)


def _load_jobs_train():
    from meta_dist import job

    return job


def _one_line(err: BaseException) -> str:
    message = str(err)
    assert "\n" not in message, message
    return message


# ---------------------------------------------------------------------------- no cluster needed


@pytest.mark.parametrize("address", ["127.0.0.1:6379", "ray://127.0.0.1:10001", "auto",
                                     "http://", "ftp://127.0.0.1:8265"])
def test_non_http_address_is_a_user_error(address: str) -> None:
    with pytest.raises(UserError, match="must be the HTTP URL"):
        jobs_client.resolve_address(address)


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
        message = _one_line(info.value)
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
        _one_line(info.value)
    finally:
        server.shutdown()
        thread.join()


def test_explicit_address_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:9999/")
    assert jobs_client.resolve_address("http://127.0.0.1:8265/") == "http://127.0.0.1:8265"
    assert jobs_client.resolve_address(None) == "http://127.0.0.1:9999"
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")  # a GCS address: not for the Jobs API
    assert jobs_client.resolve_address(None) == jobs_client.DEFAULT_ADDRESS
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "http://127.0.0.1:7777")
    assert jobs_client.resolve_address(None) == "http://127.0.0.1:7777"


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


# ---------------------------------------------------------------------------- a real Ray head


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    with loopback_head() as url:
        yield url


@pytest.fixture()
def job_dir(tmp_path: Path) -> Path:
    """A small working_dir with a marker file and paths the excludes must keep out."""
    (tmp_path / "marker.txt").write_text("shipped-marker")
    for excluded in (".venv/lib", "runs/old", ".git"):
        (tmp_path / excluded).mkdir(parents=True)
        (tmp_path / excluded / "big.bin").write_bytes(b"\x00" * 1024)
    return tmp_path


def _py(code: str) -> str:
    return shlex.join(["python", "-c", code])


@pytest.mark.integration
def test_follow_streams_logs_and_returns_0_on_success(ray_head: str, job_dir: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    code = ("import os; print('hello from job'); print(open('marker.txt').read()); "
            "print('shipped:', sorted(os.listdir('.')))")
    rc = jobs_client.submit([], ray_head, follow=True, storage=None, working_dir=job_dir,
                            entrypoint=_py(code))
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "hello from job" in out and "shipped-marker" in out
    assert "shipped: ['marker.txt']" in out  # .venv, runs/, .git were excluded
    assert "SUCCEEDED" in out


@pytest.mark.integration
def test_follow_returns_1_when_the_job_fails(ray_head: str, job_dir: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    code = "import sys; print('about to fail'); sys.exit(3)"
    rc = jobs_client.submit([], ray_head, follow=True, storage=None, working_dir=job_dir,
                            entrypoint=_py(code))
    out = capsys.readouterr().out
    assert rc == 1, out
    assert "about to fail" in out and "FAILED" in out


@pytest.mark.integration
def test_job_commands_on_a_finished_job(ray_head: str, job_dir: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    job_id = f"mdtest-{secrets.token_hex(4)}"
    rc = jobs_client.submit([], ray_head, follow=False, storage=None, working_dir=job_dir,
                            job_id=job_id, entrypoint=_py("print('quick job output')"))
    assert rc == 0
    assert f"submitted job {job_id}" in capsys.readouterr().out
    with pytest.raises(UserError, match="already exists"):
        jobs_client.submit([], ray_head, False, None, job_dir, job_id=job_id,
                           entrypoint=_py("print(1)"))

    assert jobs_client.logs(ray_head, job_id, follow=True) == 0  # waits for the end
    assert "quick job output" in capsys.readouterr().out
    assert jobs_client.logs(ray_head, job_id, follow=False) == 0
    assert "quick job output" in capsys.readouterr().out
    assert jobs_client.status(ray_head, job_id) == 0
    assert f"job {job_id}: SUCCEEDED" in capsys.readouterr().out
    assert jobs_client.list_jobs(ray_head) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if job_id in line]
    assert len(listed) == 1 and "SUCCEEDED" in listed[0]
    assert jobs_client.stop(ray_head, job_id) == 0
    assert "already finished: SUCCEEDED" in capsys.readouterr().out
    with pytest.raises(UserError, match="no job 'no-such-job'") as info:
        jobs_client.status(ray_head, "no-such-job")
    _one_line(info.value)


@pytest.mark.integration
def test_stop_ends_a_running_job(ray_head: str, job_dir: Path,
                                 capsys: pytest.CaptureFixture) -> None:
    job_id = f"mdtest-{secrets.token_hex(4)}"
    code = "import time; print('sleeping', flush=True); time.sleep(600)"
    jobs_client.submit([], ray_head, False, None, job_dir, job_id=job_id, entrypoint=_py(code))
    client, _ = jobs_client.connect(ray_head)
    deadline = time.monotonic() + 120
    while client.get_job_status(job_id).value != "RUNNING":
        assert time.monotonic() < deadline, "job never started"
        time.sleep(0.5)
    assert jobs_client.stop(ray_head, job_id) == 0
    assert "stop requested" in capsys.readouterr().out
    assert jobs_client.logs(ray_head, job_id, follow=True) == 1  # ends STOPPED, not SUCCEEDED
    assert client.get_job_status(job_id).value == "STOPPED"


_LIST_JOBS = """
import sys
from meta_dist.errors import UserError
from meta_dist.runtime import jobs_client
try:
    sys.exit(jobs_client.list_jobs(sys.argv[1]))
except UserError as e:
    print(e, file=sys.stderr)
    sys.exit(2)
"""


@pytest.mark.integration
def test_token_authentication_is_enforced_and_reported_in_one_line(tmp_path: Path) -> None:
    """Ray's token mode (RAY_AUTH_MODE=token) as cluster/README.md describes it: a client without
    the token, or with a wrong one, gets a one-line UserError; with it, the call works. Each
    client runs in its own process because Ray reads RAY_AUTH_MODE once per process."""
    token = secrets.token_hex(16)
    with loopback_head(num_cpus=1, extra_env={"RAY_AUTH_MODE": "token",
                                              "RAY_AUTH_TOKEN": token}) as url:
        def list_jobs(client_env: dict[str, str]) -> subprocess.CompletedProcess:
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith(("RAY_AUTH_", "RAY_ADDRESS", "RAY_API_SERVER"))}
            # HOME without ~/.ray/auth_token, so only the variables given here count.
            env.update(client_env, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", HOME=str(tmp_path))
            return subprocess.run([sys.executable, "-c", _LIST_JOBS, url], env=env, cwd=REPO_ROOT,
                                  capture_output=True, text=True, timeout=120)

        without = list_jobs({})
        assert without.returncode == 2, without.stderr
        assert "refused the request" in without.stderr and "RAY_AUTH_MODE=token" in without.stderr
        assert len(without.stderr.strip().splitlines()) == 1, without.stderr
        wrong = list_jobs({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "not-the-token"})
        assert wrong.returncode == 2 and "refused the request" in wrong.stderr, wrong.stderr
        right = list_jobs({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token})
        assert right.returncode == 0, right.stderr
        assert f"no jobs on {url}" in right.stdout
