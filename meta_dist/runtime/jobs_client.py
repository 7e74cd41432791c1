"""Ray Jobs client behind `meta-dist submit` and the job commands (list, status, logs, stop).

A submitted run is the same `meta-dist train` command line, shipped as a Ray job whose entrypoint
is `python -m meta_dist.job <train options>` and whose working_dir is the submitting folder, so the
cluster imports the user's own modules (a config's import paths) from exactly what was submitted. Dependencies are NOT installed per job by default: the
cluster image or venv already has them, and a per-job pip install would make every submission slow
and dependent on a package index (`install_deps=True` opts in, using pyproject's dependency list).

Every command reaches the cluster through `jobs_address.connect` (address resolution and a fail-fast
probe) and turns the SDK's failures into one-line errors with `jobs_address.translate_errors`.
"""
from __future__ import annotations

import asyncio
import re
import secrets
import shlex
import time
import tomllib
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from meta_dist.errors import UserError
from meta_dist.runtime.jobs_address import connect, translate_errors
from meta_dist.runtime.placement import CODE_EXCLUDES

if TYPE_CHECKING:
    from ray.job_submission import JobDetails, JobSubmissionClient

TERMINAL_STATUS_TIMEOUT_S = 60.0
TRAIN_ENTRYPOINT = ("python", "-m", "meta_dist.job")

_JOB_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


# ---------------------------------------------------------------------------- job lookup


def _find_job(client: JobSubmissionClient, job_id: str) -> JobDetails | None:
    """The job's details, or None when the cluster has no job with this id."""
    try:
        return client.get_job_info(job_id)
    except RuntimeError as e:
        # The SDK reports every non-200 answer as RuntimeError("Request failed with status code
        # N: ..."); the server answers 404 exactly when no job has this id.
        if "status code 404" in str(e):
            return None
        raise


def _job_info(client: JobSubmissionClient, url: str, job_id: str) -> JobDetails:
    info = _find_job(client, job_id)
    if info is None:
        raise UserError(f"no job {job_id!r} on {url}; list jobs with `meta-dist jobs list "
                        f"--address {url}`")
    return info


# ---------------------------------------------------------------------------- entrypoints


def build_entrypoint(train_args: Sequence[str]) -> str:
    """`python -m meta_dist.job <train args>`, each argument shell-quoted."""
    return shlex.join([*TRAIN_ENTRYPOINT, *train_args])


def _flag_value(args: Sequence[str], flag: str) -> str | None:
    """The value of `flag` given as `flag VALUE` or `flag=VALUE`; the last one wins."""
    value = None
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(flag + "="):
            value = arg[len(flag) + 1:]
    return value


def is_uri(storage: str) -> bool:
    return "://" in storage


def apply_storage(train_args: Sequence[str], storage: str | None, job_name: str) -> list[str]:
    """Train args with the run directory set to `storage/<job_name>`.

    A path (which must be absolute and on a filesystem every node shares) becomes `--run-dir`.
    A URI (`s3://bucket/prefix`, `gs://...`, `file:///...`) becomes `--storage URI/<job_name>`:
    training then writes to a local temporary run directory on the node running the entrypoint,
    and `meta_dist.job` uploads that directory with `pyarrow.fs.copy_files(local, uri)` when
    training ends (so a URI run cannot be resumed in place; pass --run-dir on shared storage
    for runs you intend to --resume).
    """
    args = list(train_args)
    if storage is None:
        return args
    if _flag_value(args, "--run-dir") is not None:
        raise UserError("--storage and --run-dir both given: --storage puts the run directory at "
                        "STORAGE/<job id>; drop one of them")
    storage = storage.rstrip("/")
    target = f"{storage}/{job_name}"
    if is_uri(storage):
        return [*args, "--storage", target]
    if not storage.startswith("/"):
        raise UserError(f"--storage {storage!r} must be an absolute path on a filesystem that "
                        f"every node shares, or a URI such as s3://bucket/prefix")
    return [*args, "--run-dir", target]


def new_job_id(train_args: Sequence[str]) -> str:
    """A readable, unique submission id: meta-dist-<config>-<UTC time>-<random>."""
    config = _flag_value(train_args, "--config")
    label = Path(config).stem if config else "default"
    label = re.sub(r"[^A-Za-z0-9_-]+", "-", label).strip("-").lower() or "run"
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"meta-dist-{label}-{stamp}-{secrets.token_hex(3)}"


def package_dependencies(working_dir: Path) -> list[str]:
    """[project].dependencies of the pyproject.toml in `working_dir` (for `install_deps`)."""
    pyproject = working_dir / "pyproject.toml"
    if not pyproject.is_file():
        raise UserError(f"--install-deps needs {pyproject} to read the dependency list from")
    with pyproject.open("rb") as f:
        deps = tomllib.load(f).get("project", {}).get("dependencies")
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise UserError(f"{pyproject} has no [project].dependencies list of strings")
    return deps


def build_runtime_env(working_dir: Path, install_deps: bool = False) -> dict[str, Any]:
    # No RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER here: a job inherits its head's environment (a head
    # from cluster/local.sh already has it), and forcing it on a cloud head would make the job's
    # driver look for a raylet on 127.0.0.1 instead of the node's address.
    env: dict[str, Any] = {
        "working_dir": str(working_dir),
        "excludes": list(CODE_EXCLUDES),
    }
    if install_deps:
        env["pip"] = package_dependencies(working_dir)
    return env


# ---------------------------------------------------------------------------- commands


def submit(train_args: Sequence[str], address: str | None, follow: bool, storage: str | None,
           working_dir: str | Path, job_id: str | None = None, *, entrypoint: str | None = None,
           install_deps: bool = False) -> int:
    """Submit a training run as a Ray job; print its id. Returns 0 once submitted, or with
    `follow` streams its logs and returns 0 iff it SUCCEEDED, else 1.

    `entrypoint` replaces the `python jobs/train.py ...` command (then `train_args` and `storage`
    must be empty); tests and tools use it to ship an arbitrary command the same way."""
    workdir = Path(working_dir).resolve()
    if not workdir.is_dir():
        raise UserError(f"working directory {workdir} does not exist")
    if job_id is not None and not _JOB_ID_RE.fullmatch(job_id):
        raise UserError(f"job id {job_id!r} must be 1-128 letters, digits, '.', '_' or '-', "
                        f"starting with a letter or digit")
    name = job_id or new_job_id(train_args)
    if entrypoint is None:
        entrypoint = build_entrypoint(apply_storage(train_args, storage, name))
    elif train_args or storage is not None:
        raise ValueError("submit(): pass either entrypoint or train_args/storage, not both")
    runtime_env = build_runtime_env(workdir, install_deps)

    client, url = connect(address)
    with translate_errors(url):
        if job_id is not None and _find_job(client, job_id) is not None:
            raise UserError(f"a job with id {job_id!r} already exists on {url}; pick another id")
        client.submit_job(entrypoint=entrypoint, submission_id=name, runtime_env=runtime_env,
                          metadata={"meta_dist_args": shlex.join(train_args)})
    print(f"submitted job {name} to {url}", flush=True)
    if not follow:
        print(f"follow it with: meta-dist jobs logs {name} --follow --address {url}", flush=True)
        return 0
    return _follow(client, url, name)


def list_jobs(address: str | None) -> int:
    """Print one line per job on the cluster, oldest first."""
    client, url = connect(address)
    with translate_errors(url):
        jobs = client.list_jobs()
    if not jobs:
        print(f"no jobs on {url}")
        return 0
    jobs.sort(key=lambda j: j.start_time or 0)
    print(f"{'JOB ID':<44} {'STATUS':<10} {'STARTED':<19} ENTRYPOINT")
    for job in jobs:
        entry = job.entrypoint or ""
        entry = entry if len(entry) <= 70 else entry[:67] + "..."
        print(f"{job.submission_id or job.job_id or '?':<44} {job.status.value:<10} "
              f"{_format_ms(job.start_time):<19} {entry}")
    return 0


def status(address: str | None, job_id: str) -> int:
    """Print the job's status line (and its message); 0 whenever the job exists."""
    client, url = connect(address)
    with translate_errors(url):
        info = _job_info(client, url, job_id)
    print(_status_line(job_id, info))
    return 0


def logs(address: str | None, job_id: str, follow: bool) -> int:
    """Print the job's logs so far; with `follow`, stream them to the end and return 0 iff the
    job SUCCEEDED (like `submit --follow`)."""
    client, url = connect(address)
    with translate_errors(url):
        _job_info(client, url, job_id)
        if not follow:
            print(client.get_job_logs(job_id), end="", flush=True)
            return 0
    return _follow(client, url, job_id)


def stop(address: str | None, job_id: str) -> int:
    """Ask the cluster to stop the job (SIGTERM, then SIGKILL after Ray's grace period)."""
    client, url = connect(address)
    with translate_errors(url):
        info = _job_info(client, url, job_id)
        if info.status.is_terminal():
            print(f"job {job_id} already finished: {info.status.value}")
            return 0
        client.stop_job(job_id)
    print(f"stop requested for job {job_id} (was {info.status.value}); check with "
          f"`meta-dist jobs status {job_id} --address {url}`")
    return 0


# ---------------------------------------------------------------------------- following


def _follow(client: JobSubmissionClient, url: str, job_id: str) -> int:
    async def pump() -> None:
        async for chunk in client.tail_job_logs(job_id):
            print(chunk, end="", flush=True)

    try:
        with translate_errors(url):
            asyncio.run(pump())
            info = _wait_terminal(client, url, job_id)
    except KeyboardInterrupt:
        print(f"\nstopped following; job {job_id} keeps running on the cluster. Stop it with "
              f"`meta-dist jobs stop {job_id} --address {url}`", flush=True)
        return 130
    print(_status_line(job_id, info), flush=True)
    return 0 if info.status.value == "SUCCEEDED" else 1


def _wait_terminal(client: JobSubmissionClient, url: str, job_id: str) -> JobDetails:
    """The log stream closes when the job ends; its status may land a moment later."""
    deadline = time.monotonic() + TERMINAL_STATUS_TIMEOUT_S
    while True:
        info = _job_info(client, url, job_id)
        if info.status.is_terminal():
            return info
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id}: log stream ended but status is still "
                               f"{info.status.value} after {TERMINAL_STATUS_TIMEOUT_S:.0f} s")
        time.sleep(0.5)


def _status_line(job_id: str, info: JobDetails) -> str:
    line = f"job {job_id}: {info.status.value}"
    if info.start_time:
        end = info.end_time or time.time() * 1000
        line += f" ({(end - info.start_time) / 1000:.1f} s)"
    if info.message:
        # A failed job's message appends its last logs; the first line is the summary.
        line += f" - {info.message.strip().splitlines()[0]}"
    return line


def _format_ms(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"
