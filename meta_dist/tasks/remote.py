"""Task stores in cloud object storage: `s3://bucket/prefix` and `gs://bucket/prefix`.

A cloud cluster needs no shared disk: every node fetches the store the first time one of its processes
opens it, into a node-local cache, and memory-maps that copy like any local store. The cache entry is
named by the URI and the manifest's images sha256, so a re-uploaded store gets a fresh entry and a
stale copy is never read; the download is checked against that sha256 before it becomes visible, and
one lock per entry makes the workers of a node fetch it once between them.

Connection settings come from the usual places: Arrow's S3 and GCS clients read the standard
credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_DEFAULT_REGION, an instance role,
GOOGLE_APPLICATION_CREDENTIALS), and `AWS_ENDPOINT_URL` or URI options (`?endpoint_override=HOST:PORT
&scheme=http`) point at an S3-compatible server. `meta-dist data push STORE URI` uploads a store.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from meta_dist.errors import UserError
from meta_dist.fileio import fsync_dir, sha256_file

SCHEMES = ("s3://", "gs://", "gcs://")
CACHE_ENV = "META_DIST_CACHE_DIR"
ARROW_ERRORS = (pa.ArrowException, OSError, ValueError)


def is_remote(path: str | os.PathLike | None) -> bool:
    return isinstance(path, str) and path.startswith(SCHEMES)


def cache_root() -> Path:
    """Where fetched stores live on this node: $META_DIST_CACHE_DIR, else ~/.cache/meta-dist/stores."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "meta-dist" / "stores")


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The Arrow filesystem of `uri` and the store's path inside it."""
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except ARROW_ERRORS as e:
        raise UserError(f"cannot open '{uri}' ({_first_line(e)}); use s3://BUCKET/PREFIX or gs://BUCKET/PREFIX "
                        "with credentials in the environment") from None
    return fs, path.rstrip("/")


def read_text(fs: pafs.FileSystem, path: str, uri: str) -> str:
    try:
        with fs.open_input_stream(path) as f:
            return f.read().decode()
    except FileNotFoundError:
        raise UserError(f"task store '{uri}' has no {Path(path).name}; upload a whole store with "
                        f"`meta-dist data push STORE {uri}`") from None
    except ARROW_ERRORS as e:
        raise UserError(f"cannot read '{uri}' ({_first_line(e)}); check the address and the credentials") from None


def _download(fs: pafs.FileSystem, path: str, dest: Path, uri: str) -> None:
    try:
        with fs.open_input_stream(path) as src, open(dest, "wb") as out:
            while block := src.read(8 << 20):
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
    except FileNotFoundError:
        raise UserError(f"task store '{uri}' is incomplete (missing {dest.name}); upload a whole store with "
                        f"`meta-dist data push STORE {uri}`") from None
    except ARROW_ERRORS as e:
        raise UserError(f"cannot read '{uri}' ({_first_line(e)}); check the address and the credentials") from None


def cache_entry(uri: str, images_sha256: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", uri.split("?")[0])[-80:]
    key = hashlib.sha256(f"{uri}\n{images_sha256}".encode()).hexdigest()[:16]
    return cache_root() / f"{slug}-{key}"


@contextlib.contextmanager
def _entry_lock(entry: Path):
    entry.parent.mkdir(parents=True, exist_ok=True)
    with open(entry.with_name(entry.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def fetch(uri: str, files: tuple[str, ...], manifest_name: str, parse_manifest) -> Path:
    """The node-local copy of the store at `uri` (downloaded on first use): a directory holding `files`
    and the manifest. `parse_manifest(text, where)` validates the manifest and returns it as a dict."""
    fs, base = filesystem(uri)
    text = read_text(fs, f"{base}/{manifest_name}", uri)
    manifest = parse_manifest(text, uri)
    entry = cache_entry(uri, manifest["images_sha256"])
    if (entry / manifest_name).is_file():
        return entry
    with _entry_lock(entry):
        if (entry / manifest_name).is_file():  # fetched by another process of this node meanwhile
            return entry
        part = entry.with_name(f"{entry.name}.part{os.getpid()}")
        shutil.rmtree(part, ignore_errors=True)
        part.mkdir(parents=True)
        try:
            for name in files:
                _download(fs, f"{base}/{name}", part / name, uri)
            if sha256_file(part / files[0]) != manifest["images_sha256"]:
                raise UserError(f"task store '{uri}': {files[0]} does not match the sha256 in its manifest "
                                f"(partly uploaded or replaced); upload it again with `meta-dist data push`")
            (part / manifest_name).write_text(text)
            os.replace(part, entry)
            fsync_dir(entry.parent)
        finally:
            shutil.rmtree(part, ignore_errors=True)
    return entry


def push(store: Path, uri: str, files: tuple[str, ...], manifest_name: str) -> None:
    """Upload a local store's files to `uri`, the manifest last, so a reader that finds the manifest
    finds the files it describes."""
    fs, base = filesystem(uri)
    try:
        fs.create_dir(base, recursive=True)
        for name in (*files, manifest_name):
            with open(store / name, "rb") as src, fs.open_output_stream(f"{base}/{name}") as out:
                while block := src.read(8 << 20):
                    out.write(block)
    except ARROW_ERRORS as e:
        raise UserError(f"cannot write to '{uri}' ({_first_line(e)}); check the bucket, the address and the "
                        "credentials") from None
