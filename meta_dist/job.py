"""Ray job entry point for a training run: `python -m meta_dist.job [meta-dist train options...] [--storage PATH_OR_URI]`.

Runs `meta-dist train` with the given options and exits with its code. `meta-dist submit` ships the
submitting folder as the job's working_dir and runs this module, so the job imports the user's own
modules from that folder (and, submitted from a meta-dist checkout, that checkout's `meta_dist/`).

--storage says where the run directory must end up. A path (absolute, on storage every node
shares) simply becomes --run-dir. A URI (s3://bucket/prefix/run, gs://..., file:///...) is reached
through pyarrow.fs: training writes to a local run directory (--run-dir if given, else a
temporary one) and the whole directory is uploaded with `pyarrow.fs.copy_files` when training
ends, whatever its exit code, so a failed run's checkpoints and metrics are kept too. The
trade-off: nothing reaches the URI until the run ends, and a URI run cannot be resumed in place.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path


def pop_flag(args: list[str], flag: str) -> tuple[str | None, list[str]]:
    """Remove every `flag VALUE` / `flag=VALUE` from args; return the last value and the rest."""
    value, rest, i = None, [], 0
    while i < len(args):
        arg = args[i]
        if arg == flag:
            if i + 1 >= len(args):
                raise ValueError(f"{flag} needs a value")
            value, i = args[i + 1], i + 2
            continue
        if arg.startswith(flag + "="):
            value = arg[len(flag) + 1:]
        else:
            rest.append(arg)
        i += 1
    return value, rest


def upload_run_dir(local_dir: Path, uri: str) -> None:
    """Copy the run directory tree to `uri` (any filesystem pyarrow.fs knows)."""
    import pyarrow.fs

    pyarrow.fs.copy_files(str(local_dir), uri)


def run(args: list[str]) -> int:
    """Train with `args`, handling --storage; returns the exit code."""
    try:
        storage, train_args = pop_flag(args, "--storage")
        run_dir, _ = pop_flag(train_args, "--run-dir")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from meta_dist import cli

    if storage is None:
        return cli.main(["train", *train_args])
    if "://" not in storage:
        if run_dir is not None:
            print("error: --storage PATH and --run-dir both given; drop one", file=sys.stderr)
            return 2
        return cli.main(["train", *train_args, "--run-dir", storage])

    staging = None
    if run_dir is None:
        staging = Path(tempfile.mkdtemp(prefix="meta-dist-run-"))
        run_dir = str(staging / "run")
        train_args = [*train_args, "--run-dir", run_dir]
    code = cli.main(["train", *train_args])
    local = Path(run_dir)
    if not local.is_dir() or not any(local.iterdir()):
        print(f"no run directory at {local} to upload to {storage}", file=sys.stderr)
        return code
    print(f"uploading {local} to {storage}", flush=True)
    upload_run_dir(local, storage)
    print(f"uploaded run directory to {storage}", flush=True)
    if staging is not None:
        shutil.rmtree(staging)
    return code


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
