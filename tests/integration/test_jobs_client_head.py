"""The Ray Jobs client (meta_dist.runtime.jobs_client) against a real Ray head, marked `integration`.

One Ray head on loopback serves the module, in its own process group with its own ports and temp dir
(tests/helpers/jobs.py); tiny jobs go through the real API, and exactly the processes the head
started are killed afterwards. The token-authentication test starts a second head of its own.
"""
from __future__ import annotations

import os
import secrets
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meta_dist.errors import UserError
from meta_dist.runtime import jobs_address, jobs_client
from tests.helpers.jobs import Head, loopback_head, one_line

REPO_ROOT = Path(__file__).resolve().parents[2]


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
def test_follow_streams_logs_and_returns_0_on_success(ray_head: Head, job_dir: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    code = ("import os; print('hello from job'); print(open('marker.txt').read()); "
            "print('shipped:', sorted(os.listdir('.')))")
    rc = jobs_client.submit([], ray_head.url, follow=True, storage=None, working_dir=job_dir,
                            entrypoint=_py(code))
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "hello from job" in out and "shipped-marker" in out
    assert "shipped: ['marker.txt']" in out  # .venv, runs/, .git were excluded
    assert "SUCCEEDED" in out


@pytest.mark.integration
def test_follow_returns_1_when_the_job_fails(ray_head: Head, job_dir: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    code = "import sys; print('about to fail'); sys.exit(3)"
    rc = jobs_client.submit([], ray_head.url, follow=True, storage=None, working_dir=job_dir,
                            entrypoint=_py(code))
    out = capsys.readouterr().out
    assert rc == 1, out
    assert "about to fail" in out and "FAILED" in out


@pytest.mark.integration
def test_job_commands_on_a_finished_job(ray_head: Head, job_dir: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    job_id = f"mdtest-{secrets.token_hex(4)}"
    rc = jobs_client.submit([], ray_head.url, follow=False, storage=None, working_dir=job_dir,
                            job_id=job_id, entrypoint=_py("print('quick job output')"))
    assert rc == 0
    assert f"submitted job {job_id}" in capsys.readouterr().out
    with pytest.raises(UserError, match="already exists"):
        jobs_client.submit([], ray_head.url, False, None, job_dir, job_id=job_id,
                           entrypoint=_py("print(1)"))

    assert jobs_client.logs(ray_head.url, job_id, follow=True) == 0  # waits for the end
    assert "quick job output" in capsys.readouterr().out
    assert jobs_client.logs(ray_head.url, job_id, follow=False) == 0
    assert "quick job output" in capsys.readouterr().out
    assert jobs_client.status(ray_head.url, job_id) == 0
    assert f"job {job_id}: SUCCEEDED" in capsys.readouterr().out
    assert jobs_client.list_jobs(ray_head.url) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if job_id in line]
    assert len(listed) == 1 and "SUCCEEDED" in listed[0]
    assert jobs_client.stop(ray_head.url, job_id) == 0
    assert "already finished: SUCCEEDED" in capsys.readouterr().out
    with pytest.raises(UserError, match="no job 'no-such-job'") as info:
        jobs_client.status(ray_head.url, "no-such-job")
    one_line(info.value)


@pytest.mark.integration
def test_stop_ends_a_running_job(ray_head: Head, job_dir: Path,
                                 capsys: pytest.CaptureFixture) -> None:
    job_id = f"mdtest-{secrets.token_hex(4)}"
    code = "import time; print('sleeping', flush=True); time.sleep(600)"
    jobs_client.submit([], ray_head.url, False, None, job_dir, job_id=job_id, entrypoint=_py(code))
    client, _ = jobs_address.connect(ray_head.url)
    deadline = time.monotonic() + 120
    while client.get_job_status(job_id).value != "RUNNING":
        assert time.monotonic() < deadline, "job never started"
        time.sleep(0.5)
    assert jobs_client.stop(ray_head.url, job_id) == 0
    assert "stop requested" in capsys.readouterr().out
    assert jobs_client.logs(ray_head.url, job_id, follow=True) == 1  # ends STOPPED, not SUCCEEDED
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
                                              "RAY_AUTH_TOKEN": token}) as (_, url):
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
