"""Durable file writes and checksums shared by checkpoints, metrics, task stores and run files.

Everything a run leaves on disk is written to a temporary name, fsynced, then renamed, so a crash at
any instant leaves either the old file or the new one, never a torn one.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` writes the new content to a temporary file beside `path`; it is fsynced and renamed
    over `path`, so `path` holds either its old content or the new one, whatever happens meanwhile."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))
