"""Where a result came from: the command, meta-dist's version and source commit, and the machine.

Recorded in a run's run.json when it starts and in `meta-dist bench` output, so that every figure a
report or a table shows can name the code and hardware that produced it. Ray-free: versions are read
from package metadata, never by importing the packages.
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import torch

SOURCE = Path(__file__).resolve().parent.parent


def cpu_name() -> str:
    """The processor's model name (/proc/cpuinfo where there is one)."""
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    return name


def hardware() -> dict:
    """The processor, core count, GPU (if any) and the versions that change numerics."""
    def version(package: str) -> str:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.version(package)
        return ""

    info = {"cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__, "ray": version("ray"),
            "python": platform.python_version()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def source_commit() -> str:
    """The git commit of meta-dist's source tree, '+dirty' when it has uncommitted changes; '' when
    meta-dist runs from an installed copy rather than a checkout."""
    if not (SOURCE / ".git").exists():
        return ""
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", "-C", str(SOURCE), *args], capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()
        commit = git("rev-parse", "--short=12", "HEAD")
        return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def as_typed(command_line: str) -> str:
    """A recorded command line as a user types it: `meta-dist ...` for the console script and for
    `python -m meta_dist.cli` (whose argv[0] is the module's file)."""
    argv = shlex.split(command_line)
    if argv and (Path(argv[0]).name == "meta-dist" or Path(argv[0]).parts[-2:] == ("meta_dist", "cli.py")):
        argv[0] = "meta-dist"
    return shlex.join(argv)


def command() -> str:
    """The command line of this process, as typed (`as_typed`)."""
    return as_typed(shlex.join(sys.argv))


def record() -> dict:
    from meta_dist import __version__

    return {"command": command(), "meta_dist": __version__, "commit": source_commit(), "hardware": hardware()}
