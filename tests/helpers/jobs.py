"""Helpers of the Ray Jobs tests: a free loopback port, a Ray head on loopback (`loopback_head`) with
the cleanup that kills exactly the processes it started (shared with tests/helpers/cluster.py), and
the check that an error message is one line.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator, NamedTuple


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


def kill_tree(proc: subprocess.Popen) -> None:
    """Stop the `ray start --block` process, everything it spawned (GCS, raylet, dashboard,
    workers, job drivers: all descendants, whatever their process group) and its group."""
    pids = [proc.pid, *_descendants(proc.pid)]
    _signal_all(proc.pid, pids, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    _signal_all(proc.pid, [p for p in pids if _alive(p)], signal.SIGKILL)
    proc.wait(timeout=30)


def rmtree_tolerating_vanished(path: str) -> None:
    def onerror(func, p, exc_info):  # noqa: ANN001 - shutil's callback signature
        if not issubclass(exc_info[0], FileNotFoundError):
            raise exc_info[1]

    shutil.rmtree(path, onerror=onerror)


_HEAD_LOCK = Path(tempfile.gettempdir()) / "meta-dist-tests-ray-head.lock"
_heads_held = 0  # Jobs clusters this process has running (a test may start one inside a module's)


@contextlib.contextmanager
def one_jobs_cluster_at_a_time() -> Iterator[None]:
    """Held while a Ray head with the Jobs API runs: two such clusters on one machine at once (test files
    run side by side under pytest -n) fail each other's job submissions (the job agent disconnects),
    so a test process that wants one waits until the other's has stopped. Re-entrant per process."""
    global _heads_held
    with contextlib.ExitStack() as stack:
        if _heads_held == 0:
            lock = stack.enter_context(_HEAD_LOCK.open("w"))
            fcntl.flock(lock, fcntl.LOCK_EX)
        _heads_held += 1
        try:
            yield
        finally:
            _heads_held -= 1


class Head(NamedTuple):
    address: str
    """The GCS address, as `ray.init(address=...)` and `--address` take it."""
    url: str
    """The Jobs API (dashboard) URL."""


@contextlib.contextmanager
def loopback_head(num_cpus: int = 2, ready_timeout_s: float = 180.0,
                  extra_env: dict[str, str] | None = None) -> Iterator[Head]:
    """`ray start --head --block` on 127.0.0.1 with free ports and a short private temp dir (so no
    /tmp/ray/ray_current_cluster for other Rays to find); yields its addresses. Afterwards exactly its
    processes are killed (never `ray stop`, which stops every Ray on the machine). One at a time across
    test processes (`one_jobs_cluster_at_a_time`).

    Jobs' `python` resolves to this venv's interpreter (its bin goes first on the head's PATH).
    `extra_env` goes to every Ray process (e.g. RAY_AUTH_MODE / RAY_AUTH_TOKEN)."""
    with one_jobs_cluster_at_a_time(), _start_head(num_cpus, ready_timeout_s, extra_env) as head:
        yield head


@contextlib.contextmanager
def _start_head(num_cpus: int, ready_timeout_s: float, extra_env: dict[str, str] | None) -> Iterator[Head]:
    ray_bin = Path(sys.executable).parent / "ray"
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # Unix socket paths must stay short
    dashboard_port, gcs_port = free_port(), free_port()
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
           "PATH": f"{ray_bin.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        env.pop(name, None)
    env.update(extra_env or {})
    token = env.get("RAY_AUTH_TOKEN") if env.get("RAY_AUTH_MODE") == "token" else None
    probe = urllib.request.Request(f"http://127.0.0.1:{dashboard_port}/api/version",
                                   headers={"Authorization": f"Bearer {token}"} if token else {})
    cmd = [str(ray_bin), "start", "--head", "--block", f"--num-cpus={num_cpus}",
           "--node-ip-address=127.0.0.1", f"--port={gcs_port}",
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
        yield Head(f"127.0.0.1:{gcs_port}", url)
    finally:
        kill_tree(proc)
        rmtree_tolerating_vanished(temp_dir)


def one_line(err: BaseException) -> str:
    message = str(err)
    assert "\n" not in message, message
    return message
