"""The task store: images in one memory-mapped Arrow IPC file, a Parquet class index, a JSON manifest.

```
<store>/images.arrow     one row per image: class_key, alphabet, character, drawer, pixels
                         (fixed-size binary, H*W*C uint8, channels last), class-contiguous
<store>/classes.parquet  one row per episodic class: class_id, class_key, split, first_row, num_rows,
                         rotation (quarter turns; Omniglot's rotation classes share their rows)
<store>/store.json       format version, dataset, image shape, split name, counts, channel stats,
                         size and sha256 of images.arrow
```
Opening is cheap (a JSON read, a small Parquet read, an mmap), so every worker opens its own copy and
the OS page cache shares the bytes; gathering a chunk's rows touches only those rows. `open_store`
checks the manifest against the files (version, schema, counts, file size) and turns every problem
into a one-line `UserError`; the full sha256 is checked only on request (`verify_checksum`), because
hashing a 1 GB mini-ImageNet store in every worker would cost more than the training step.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from meta_dist.errors import UserError
from meta_dist.fileio import sha256_file
from meta_dist.tasks import remote

FORMAT = "meta-dist-task-store"
FORMAT_VERSION = 1
IMAGES, CLASSES, MANIFEST = "images.arrow", "classes.parquet", "store.json"
SPLITS = ("train", "val", "test")
BATCH_ROWS = 4096
CLASS_COLUMNS = {"class_id": pa.int32(), "class_key": pa.string(), "split": pa.string(),
                 "first_row": pa.int64(), "num_rows": pa.int32(), "rotation": pa.int8()}


def image_schema(num_bytes: int) -> pa.Schema:
    return pa.schema([("class_key", pa.string()), ("alphabet", pa.string()), ("character", pa.string()),
                      ("drawer", pa.int32()), ("pixels", pa.binary(num_bytes))])


@dataclass(frozen=True)
class ImageRow:
    class_key: str
    """The base class (an Omniglot character, a mini-ImageNet synset); rows of a class are contiguous."""
    pixels: np.ndarray
    """[H, W, C] uint8."""
    alphabet: str = ""
    character: str = ""
    drawer: int = 0


class TaskStore:
    """An opened store: the manifest, the class index as numpy arrays, and mmap views of the pixels."""

    def __init__(self, path: Path, manifest: dict, classes: pa.Table, batches: list[pa.RecordBatch], source):
        self.path = path
        self.manifest = manifest
        self._source = source  # keeps the memory map alive as long as the views
        h, w = manifest["image_shape"]
        self.image_shape = (int(manifest["channels"]), int(h), int(w))
        self.class_keys = classes.column("class_key").to_pylist()
        self.class_split = np.asarray(classes.column("split").to_pylist())
        self.first_row = classes.column("first_row").to_numpy()
        self.num_rows = classes.column("num_rows").to_numpy()
        self.rotation = classes.column("rotation").to_numpy()
        self._starts = np.cumsum([0] + [b.num_rows for b in batches])
        self._batches = batches
        self._views = [_pixel_view(b, self.image_shape) for b in batches]
        self._alphabets: np.ndarray | None = None

    @property
    def dataset(self) -> str:
        return self.manifest["dataset"]

    @property
    def num_images(self) -> int:
        return int(self._starts[-1])

    def split_classes(self, split: str, rotations: bool = True) -> np.ndarray:
        """Class ids of a split; with rotations=False only the unrotated classes."""
        mask = self.class_split == split
        if not rotations:
            mask &= self.rotation == 0
        return np.flatnonzero(mask)

    def class_alphabets(self) -> np.ndarray:
        """Each class's alphabet (the `alphabet` of its first image; '' where the source records none)."""
        if self._alphabets is None:
            alphabet = self.column("alphabet")
            self._alphabets = np.asarray([alphabet[r] for r in self.first_row], dtype=object)
        return self._alphabets

    def pixels(self, rows: np.ndarray) -> np.ndarray:
        """[len(rows), H, W, C] uint8: a copy of just these rows, read from the memory map."""
        rows = np.asarray(rows, dtype=np.int64)
        c, h, w = self.image_shape
        out = np.empty((len(rows), h, w, c), dtype=np.uint8)
        which = np.searchsorted(self._starts, rows, side="right") - 1
        for b in np.unique(which):
            sel = which == b
            out[sel] = self._views[b][rows[sel] - self._starts[b]]
        return out

    def column(self, name: str) -> list:
        """A metadata column of images.arrow (class_key, alphabet, character, drawer) as a list."""
        return [v for b in self._batches for v in b.column(name).to_pylist()]


def _pixel_view(batch: pa.RecordBatch, shape: tuple[int, int, int]) -> np.ndarray:
    """A zero-copy numpy view [rows, H, W, C] of a batch's fixed-size binary pixel column."""
    arr = batch.column("pixels")
    c, h, w = shape
    width = h * w * c
    data = np.frombuffer(arr.buffers()[1], dtype=np.uint8)
    start = arr.offset * width
    return data[start: start + len(arr) * width].reshape(len(arr), h, w, c)


def open_store(path: str | os.PathLike) -> TaskStore:
    """Open and validate a store directory, or an s3:// / gs:// store through its node-local copy
    (`meta_dist.tasks.remote`); every problem is a one-line UserError."""
    if remote.is_remote(path):
        path = remote.fetch(str(path), (IMAGES, CLASSES), MANIFEST, parse_manifest)
    root = Path(path) if path else None
    if root is None or not root.is_dir():
        raise UserError(f"task store '{path}' does not exist; build one with "
                        f"`meta-dist data prepare omniglot --source DIR --out {path or 'DIR'}` and pass it with --data")
    missing = [n for n in (MANIFEST, IMAGES, CLASSES) if not (root / n).is_file()]
    if missing:
        raise UserError(f"task store '{root}' is incomplete (missing {', '.join(missing)}); "
                        f"re-run `meta-dist data prepare` into a new --out directory")
    manifest = _read_manifest(root)
    size = (root / IMAGES).stat().st_size
    if size != manifest["images_bytes"]:
        raise UserError(f"task store '{root}': {IMAGES} is {size} bytes but the manifest says "
                        f"{manifest['images_bytes']} (truncated or replaced); re-run `meta-dist data prepare`")
    try:
        source = pa.memory_map(str(root / IMAGES), "r")
        reader = ipc.open_file(source)
        batches = [reader.get_batch(i) for i in range(reader.num_record_batches)]
        schema = reader.schema
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as e:
        raise UserError(f"task store '{root}': {IMAGES} is not a readable Arrow file "
                        f"({str(e).splitlines()[0]}); re-run `meta-dist data prepare`") from None
    c, (h, w) = manifest["channels"], manifest["image_shape"]
    if not schema.equals(image_schema(h * w * c)):
        raise UserError(f"task store '{root}': {IMAGES} has schema [{_describe(schema)}], expected "
                        f"[{_describe(image_schema(h * w * c))}]; re-run `meta-dist data prepare`")
    try:
        classes = pq.read_table(root / CLASSES)
    except (pa.ArrowInvalid, OSError) as e:
        raise UserError(f"task store '{root}': {CLASSES} is not a readable Parquet file "
                        f"({str(e).splitlines()[0]})") from None
    _check_classes(root, classes, manifest, sum(b.num_rows for b in batches))
    return TaskStore(root, manifest, classes, batches, source)


def _read_manifest(root: Path) -> dict:
    try:
        text = (root / MANIFEST).read_text()
    except UnicodeDecodeError as e:
        raise UserError(f"task store '{root}': {MANIFEST} is not valid JSON ({e})") from None
    return parse_manifest(text, root)


def parse_manifest(text: str, where: str | Path) -> dict:
    """The manifest of the store at `where` from its JSON text, checked for format, version and fields."""
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"task store '{where}': {MANIFEST} is not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UserError(f"'{where}' is not a meta-dist task store ({MANIFEST} lacks format '{FORMAT}')")
    if manifest.get("version") != FORMAT_VERSION:
        raise UserError(f"task store '{where}' has format version {manifest.get('version')}, this meta-dist "
                        f"reads version {FORMAT_VERSION}; re-run `meta-dist data prepare`")
    needed = ("dataset", "image_shape", "channels", "split", "rotations", "num_images", "num_classes",
              "images_bytes", "images_sha256", "mean", "std")
    absent = [k for k in needed if k not in manifest]
    if absent:
        raise UserError(f"task store '{where}': {MANIFEST} lacks {', '.join(absent)}; re-run `meta-dist data prepare`")
    return manifest


def _check_classes(root: Path, classes: pa.Table, manifest: dict, num_images: int) -> None:
    got = {f.name: f.type for f in classes.schema}
    if any(got.get(k) != t for k, t in CLASS_COLUMNS.items()):
        raise UserError(f"task store '{root}': {CLASSES} has columns [{_describe(classes.schema)}], expected "
                        f"[{', '.join(f'{k}: {t}' for k, t in CLASS_COLUMNS.items())}]")
    if num_images != manifest["num_images"] or classes.num_rows != manifest["num_classes"]:
        raise UserError(f"task store '{root}' holds {num_images} images / {classes.num_rows} classes but its "
                        f"manifest says {manifest['num_images']} / {manifest['num_classes']}; re-run `meta-dist data prepare`")
    end = (classes.column("first_row").to_numpy() + classes.column("num_rows").to_numpy())
    if len(end) and (end.max() > num_images or classes.column("first_row").to_numpy().min() < 0):
        raise UserError(f"task store '{root}': {CLASSES} points past the {num_images} images of {IMAGES}")


def _describe(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name}: {f.type}" for f in schema)


def push_store(path: str | os.PathLike, uri: str) -> None:
    """Check a local store in full (sha256 included) and upload it to an s3:// or gs:// URI."""
    if not remote.is_remote(uri):
        raise UserError(f"'{uri}' is not a cloud store address; give s3://BUCKET/PREFIX or gs://BUCKET/PREFIX")
    if remote.is_remote(str(path)):
        raise UserError(f"push uploads a local store; '{path}' is already remote")
    open_store(path)
    verify_checksum(path)
    remote.push(Path(path), uri, (IMAGES, CLASSES), MANIFEST)


def verify_checksum(path: str | os.PathLike) -> None:
    """Full sha256 check of images.arrow against the manifest (slow; for `prepare` and audits)."""
    root = Path(path)
    manifest = _read_manifest(root)
    if sha256_file(root / IMAGES) != manifest["images_sha256"]:
        raise UserError(f"task store '{root}': {IMAGES} does not match its sha256 (corrupted); "
                        f"re-run `meta-dist data prepare`")


# -- writing ------------------------------------------------------------------------------------------
def write_store(out_dir: str | os.PathLike, rows: Iterable[ImageRow], *, dataset: str, split_name: str,
                image_shape: tuple[int, int, int], class_splits: dict[str, list[tuple[str, int]]],
                rotations: bool, extra: dict | None = None, on_row: Callable[[int], None] | None = None) -> Path:
    """Write a store atomically (a temporary sibling directory renamed into place).

    `rows` must be class-contiguous; `class_splits[class_key]` lists the episodic classes built on that
    base class as (split, quarter turns); a rotated class's key gets a `/rotDDD` suffix when `rotations`.
    Channel mean/std for normalization are computed over the train split's images.
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out '{out}' already exists and is not empty; choose a new directory or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        runs, stats = _write_images(tmp / IMAGES, rows, image_shape, class_splits, on_row)
        classes = _class_table(runs, class_splits, rotations)
        pq.write_table(classes, tmp / CLASSES)
        c, h, w = image_shape
        counts = {s: int(sum(1 for x in classes.column("split").to_pylist() if x == s)) for s in SPLITS}
        n = max(stats[0], 1)
        mean = stats[1] / n
        std = np.sqrt(np.maximum(stats[2] / n - mean ** 2, 1e-12))
        manifest = {"format": FORMAT, "version": FORMAT_VERSION, "dataset": dataset, "image_shape": [h, w],
                    "channels": c, "split": split_name, "rotations": rotations,
                    "num_images": int(sum(r[2] for r in runs)), "num_classes": classes.num_rows,
                    "num_base_classes": len(runs), "num_classes_per_split": counts,
                    "mean": [float(m) for m in mean], "std": [float(s) for s in std],
                    "images_bytes": (tmp / IMAGES).stat().st_size, "images_sha256": sha256_file(tmp / IMAGES),
                    **(extra or {})}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_images(path: Path, rows: Iterable[ImageRow], image_shape, class_splits, on_row):
    """Stream rows into record batches; return the class runs (key, first_row, num_rows) and train
    pixel statistics (count, per-channel sum, per-channel sum of squares) in [0, 1] units."""
    c, h, w = image_shape
    schema = image_schema(h * w * c)
    runs: list[list] = []
    seen: set[str] = set()
    stats = [0, np.zeros(c), np.zeros(c)]
    buf: dict[str, list] = {k: [] for k in schema.names}
    with pa.OSFile(str(path), "wb") as sink, ipc.new_file(sink, schema) as writer:
        for i, row in enumerate(rows):
            if row.pixels.shape != (h, w, c) or row.pixels.dtype != np.uint8:
                raise AssertionError(f"row {i}: pixels {row.pixels.shape} {row.pixels.dtype}, expected {(h, w, c)} uint8")
            if not runs or runs[-1][0] != row.class_key:
                if row.class_key in seen:
                    raise AssertionError(f"rows of class {row.class_key} are not contiguous")
                if row.class_key not in class_splits:
                    raise AssertionError(f"class {row.class_key} has no split assignment")
                seen.add(row.class_key)
                runs.append([row.class_key, i, 0])
            runs[-1][2] += 1
            if any(s == "train" for s, _ in class_splits[row.class_key]):
                x = row.pixels.reshape(-1, c).astype(np.float64) / 255.0
                stats[0] += x.shape[0]
                stats[1] += x.sum(0)
                stats[2] += (x * x).sum(0)
            for k, v in (("class_key", row.class_key), ("alphabet", row.alphabet), ("character", row.character),
                         ("drawer", int(row.drawer)), ("pixels", row.pixels.tobytes())):
                buf[k].append(v)
            if len(buf["pixels"]) == BATCH_ROWS:
                writer.write_batch(pa.record_batch([buf[k] for k in schema.names], schema=schema))
                buf = {k: [] for k in schema.names}
            if on_row is not None:
                on_row(i + 1)
        if buf["pixels"]:
            writer.write_batch(pa.record_batch([buf[k] for k in schema.names], schema=schema))
    if not runs:
        raise UserError("the source held no images to write")
    return [tuple(r) for r in runs], stats


def _class_table(runs, class_splits, rotations: bool) -> pa.Table:
    cols: dict[str, list] = {k: [] for k in CLASS_COLUMNS}
    for key, first, count in runs:
        for split, rot in class_splits[key]:
            cols["class_id"].append(len(cols["class_id"]))
            cols["class_key"].append(f"{key}/rot{rot * 90:03d}" if rotations else key)
            cols["split"].append(split)
            cols["first_row"].append(first)
            cols["num_rows"].append(count)
            cols["rotation"].append(rot)
    return pa.table({k: pa.array(v, type=CLASS_COLUMNS[k]) for k, v in cols.items()})
