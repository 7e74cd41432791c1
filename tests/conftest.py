"""Shared test setup: Ray stays on loopback, torch on one thread, the real Omniglot path."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

REPO = Path(__file__).resolve().parent.parent
OMNIGLOT_SOURCE = Path(os.environ.get("META_DIST_OMNIGLOT", REPO.parent / "shared" / "data" / "omniglot"))


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def patient_channels(monkeypatch):
    """Compiled channels kept whatever a step waits on them: a slow or busy machine would otherwise
    switch a run to ordinary calls (compiled.SPIN_WAIT_S) in tests that check the channels are used."""
    from meta_dist.runtime import compiled

    monkeypatch.setattr(compiled, "SPIN_WAIT_S", float("inf"))


def local_ray(**system_config):
    """A real single-node Ray on 127.0.0.1 (2 CPUs, no dashboard) for the body of a fixture, with Ray's
    `_system_config` entries given; yields the ray module and shuts it down after."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             namespace="meta-dist-test", log_to_driver=False, _system_config=system_config or None)
    yield ray
    ray.shutdown()


def answers_once_restarted(ray, actors: list, timeout_s: float) -> list[dict]:
    """The `ping` answers of worker actors that Ray may still be restarting: a call to an actor in the
    middle of its restart fails at once (ActorUnavailableError, a RayActorError), so ask again until all
    answer or `timeout_s` has passed (then the error is raised: a constructor that keeps failing never
    answers)."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return ray.get([actor.ping.remote() for actor in actors], timeout=5)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="module")
def ray_head():
    """A real `ray start --head` on 127.0.0.1 for one test module (tests/helpers/jobs.py); yields its
    `Head`: the GCS address and the Jobs API URL."""
    from tests.helpers.jobs import loopback_head

    with loopback_head() as head:
        yield head


@pytest.fixture(scope="module")
def ray_local():
    """A real single-node Ray on 127.0.0.1 for one test module (2 CPUs, no dashboard)."""
    yield from local_ray()


def cli(*args: str, timeout: float = 300, env: dict | None = None, cwd: Path | None = None):
    """Run the installed `meta-dist` console script as a user would; returns CompletedProcess."""
    import shutil
    import subprocess

    exe = shutil.which("meta-dist", path=str(Path(sys.executable).parent)) or "meta-dist"
    full_env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", **(env or {})}
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, env=full_env,
                          cwd=cwd or REPO)


@pytest.fixture(scope="session")
def omniglot_store(tmp_path_factory) -> Path:
    """The real Omniglot release as a task store (Vinyals split), prepared once per session by
    `meta-dist data prepare omniglot` as a user runs it; skips where the release is not present."""
    if not (OMNIGLOT_SOURCE / "images_background.zip").is_file():
        pytest.skip(f"real Omniglot not found at {OMNIGLOT_SOURCE} (images_background.zip); it is not part of the repo")
    out = tmp_path_factory.mktemp("omniglot") / "store"
    done = cli("data", "prepare", "omniglot", "--source", str(OMNIGLOT_SOURCE), "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    """Final parameters digest of the fault-free in-process small run (tests/helpers/runs.py), which
    every distributed or faulty run of the same config must reproduce bitwise."""
    from tests.helpers.runs import final_digest, train

    run_dir = tmp_path_factory.mktemp("ref") / "run"
    train(run_dir, "runtime.backend=local")
    return final_digest(run_dir)


@pytest.fixture
def faults(tmp_path, monkeypatch):
    """`faults(*items)` installs a scheduled fault plan (runtime/faults.py) for this test; returns the
    directory of its fire-once markers."""
    import json

    from meta_dist.runtime.faults import ENV

    def install(*items):
        monkeypatch.setenv(ENV, json.dumps({"once_dir": str(tmp_path / "once"), "faults": list(items)}))
        return tmp_path / "once"
    return install
