"""The Arrow task store: round trip, zero-copy gathering, atomic writes, and one-line errors for
every way a store on disk can be broken."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from meta_dist.errors import UserError
from meta_dist.tasks.store import (IMAGES, MANIFEST, ImageRow, image_schema, open_store, verify_checksum,
                                   write_store)


def make_rows(num_classes=4, per_class=3, shape=(6, 5, 1)):
    for c in range(num_classes):
        for d in range(per_class):
            pixels = np.full(shape, c * 10 + d, dtype=np.uint8)
            yield ImageRow(f"A/character{c:02d}", pixels, "A", f"character{c:02d}", d + 1)


def write_small(path, rotations=True, **kw):
    splits = {f"A/character{c:02d}": ([("train", r) for r in range(4)] if c < 2 else [("test", 0)]) for c in range(4)}
    return write_store(path, make_rows(**kw), dataset="omniglot", split_name="vinyals", image_shape=(1, 6, 5),
                       class_splits=splits, rotations=rotations)


def test_round_trip(tmp_path):
    out = write_small(tmp_path / "s")
    store = open_store(out)
    assert store.num_images == 12 and store.image_shape == (1, 6, 5)
    assert len(store.split_classes("train")) == 8 and len(store.split_classes("test")) == 2
    assert len(store.split_classes("train", rotations=False)) == 2
    assert store.class_keys[1] == "A/character00/rot090" and store.rotation[1] == 1
    assert store.first_row[4] == 3 and store.num_rows[4] == 3  # A/character01/rot000
    got = store.pixels(np.array([11, 0, 4]))
    assert got.shape == (3, 6, 5, 1) and [int(g[0, 0, 0]) for g in got] == [32, 0, 11]
    assert store.column("drawer")[:3] == [1, 2, 3]
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["num_classes_per_split"] == {"train": 8, "val": 0, "test": 2}
    # mean over the train classes' pixels (values 0,1,2,10,11,12 in [0, 1] units)
    assert manifest["mean"][0] == pytest.approx(np.mean([0, 1, 2, 10, 11, 12]) / 255)
    verify_checksum(out)


def test_pixels_are_a_view_of_the_memory_map(tmp_path):
    store = open_store(write_small(tmp_path / "s"))
    view = store._views[0]
    assert not view.flags.owndata and not view.flags.writeable  # backed by the mmap, not a copy


def test_write_is_atomic_and_refuses_to_overwrite(tmp_path):
    out = write_small(tmp_path / "s")
    with pytest.raises(UserError, match="already exists"):
        write_small(out)

    def boom():
        yield from make_rows(1)
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError):
        write_store(tmp_path / "t", boom(), dataset="omniglot", split_name="x", image_shape=(1, 6, 5),
                    class_splits={"A/character00": [("train", 0)]}, rotations=False)
    assert not (tmp_path / "t").exists() and not list(tmp_path.glob(".t.tmp-*"))


def test_missing_directory_and_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        open_store(tmp_path / "nope")
    out = write_small(tmp_path / "s")
    (out / "classes.parquet").unlink()
    with pytest.raises(UserError, match="missing classes.parquet"):
        open_store(out)


def test_truncated_images_file(tmp_path):
    out = write_small(tmp_path / "s")
    data = (out / IMAGES).read_bytes()
    (out / IMAGES).write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated"):
        open_store(out)
    # same size, garbage bytes: pyarrow's error becomes a one-line UserError
    (out / IMAGES).write_bytes(b"\0" * len(data))
    with pytest.raises(UserError, match="not a readable Arrow file") as e:
        open_store(out)
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="sha256"):
        verify_checksum(out)


def test_wrong_schema_and_version(tmp_path):
    out = write_small(tmp_path / "s")
    manifest = json.loads((out / MANIFEST).read_text())
    bad = pa.schema([f if f.name != "drawer" else pa.field("drawer", pa.string()) for f in image_schema(30)])
    table = pa.table({n: pa.array([], type=bad.field(n).type) for n in bad.names})
    with pa.OSFile(str(out / IMAGES), "wb") as sink, ipc.new_file(sink, bad) as w:
        w.write_table(table)
    manifest["images_bytes"] = (out / IMAGES).stat().st_size
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="schema"):
        open_store(out)
    manifest["version"] = 99
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="format version 99"):
        open_store(out)
    (out / MANIFEST).write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        open_store(out)


def test_count_mismatch(tmp_path):
    out = write_small(tmp_path / "s")
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["num_images"] = 13
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="holds 12 images"):
        open_store(out)
