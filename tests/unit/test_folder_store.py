"""`meta-dist data prepare folder` and `store_from_dataset` on real PNG/JPEG files written into tmp_path:
the store round trip, the seeded class split (ratios, split files, per-row list splits), preprocessing
(grayscale, resize, the recorded spec replayed by `load_image_file`), and the one-line errors."""
from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

from meta_dist import cli
from meta_dist.errors import UserError
from meta_dist.tasks import omniglot
from meta_dist.tasks.folder import (check_ratios, load_image_file, prepare_folder, preprocess_spec, split_classes,
                                    store_from_dataset)
from meta_dist.tasks.store import SPLITS, open_store, verify_checksum


def write_images(root, classes: dict[str, int], size=(10, 8), ext="png", seed=0) -> dict[str, list]:
    """One folder per class holding random RGB images of `size` (W, H); returns class -> [(path, array)]."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, count in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        out[name] = []
        for j in range(count):
            arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            path = root / name / f"img{j:02d}.{ext}"
            Image.fromarray(arr).save(path)
            out[name].append((path, arr))
    return out


def assignment(store) -> dict[str, str]:
    return dict(zip(store.class_keys, store.class_split.tolist()))


def test_folder_round_trip(tmp_path):
    src = tmp_path / "src"
    images = write_images(src, {f"class{c}": 3 for c in range(5)})
    (src / "class0" / ".DS_Store").write_bytes(b"junk")  # OS metadata and non-images are skipped
    (src / "class1" / "notes.txt").write_text("not an image")
    (src / ".hidden").mkdir()
    extra = np.full((8, 10, 3), 7, dtype=np.uint8)
    Image.fromarray(extra).save(src / "class2" / "upper.PNG")  # extensions are case-insensitive
    store = open_store(prepare_folder(src, tmp_path / "store", seed=3))
    m = store.manifest
    assert store.image_shape == (3, 8, 10) and store.num_images == 16
    assert store.class_keys == [f"class{c}" for c in range(5)] and m["class_names"] == store.class_keys
    assert m["dataset"] == "folder" and m["split"] == "ratios" and m["rotations"] is False
    assert m["split_seed"] == 3 and m["split_ratios"] == [0.64, 0.16, 0.2]
    assert m["preprocess"] == {"image_size": None, "mode": "RGB", "resample": "lanczos", "invert": False}
    assert sorted(m["num_classes_per_split"].values()) == [1, 1, 3]
    assert list(store.num_rows) == [3, 3, 4, 3, 3]
    spec = preprocess_spec(m)
    for c, name in enumerate(store.class_keys):
        files = [p for p, _ in images[name]] + ([src / "class2" / "upper.PNG"] if name == "class2" else [])
        got = store.pixels(np.arange(store.first_row[c], store.first_row[c] + store.num_rows[c]))
        for g, path in zip(got, sorted(files, key=lambda p: p.name)):
            assert np.array_equal(g, load_image_file(path, spec, store.image_shape))
    assert np.array_equal(store.pixels(np.array([0]))[0], images["class0"][0][1])  # PNG is lossless
    assert store.column("character")[:3] == ["class0"] * 3
    verify_checksum(store.path)


def test_ratio_split_is_seeded_and_follows_the_ratios(tmp_path):
    names = [f"c{i:02d}" for i in range(20)]
    random.seed(0)
    a = split_classes(names, (0.64, 0.16, 0.2), seed=1)
    random.seed(99)  # the global RNG plays no part
    assert split_classes(names, (0.64, 0.16, 0.2), seed=1) == a
    assert split_classes(names, (0.64, 0.16, 0.2), seed=2) != a
    assert [list(a.values()).count(s) for s in SPLITS] == [13, 3, 4]
    b = split_classes(names, (0.5, 0.25, 0.25), seed=1)
    assert [list(b.values()).count(s) for s in SPLITS] == [10, 5, 5]
    assert split_classes(["a", "b"], (0.5, 0.0, 0.5), seed=1).keys() == {"a", "b"}
    with pytest.raises(UserError, match="cannot give each split"):
        split_classes(["a", "b"], (0.64, 0.16, 0.2), seed=1)  # 3 splits with ratio > 0, 2 classes

    src = tmp_path / "src"
    write_images(src, {n: 1 for n in names[:6]}, size=(4, 4))
    s1, s1b, s2 = (open_store(prepare_folder(src, tmp_path / o, seed=sd)) for o, sd in (("a", 1), ("b", 1), ("c", 5)))
    assert assignment(s1) == assignment(s1b) == split_classes(names[:6], (0.64, 0.16, 0.2), seed=1)
    assert assignment(s1) != assignment(s2)
    ratios = open_store(prepare_folder(src, tmp_path / "d", split_ratios=(0.5, 0.5, 0.0)))
    assert ratios.manifest["num_classes_per_split"] == {"train": 3, "val": 3, "test": 0}
    for bad in ("0.5,0.5", "0.7,0.2,0.2", "-0.1,0.6,0.5", "a,b,c", (0.5, 0.5)):
        with pytest.raises(UserError, match="--split-ratios must be 3 non-negative numbers"):
            check_ratios(bad)


def test_split_file_is_honoured_and_bad_ones_rejected(tmp_path):
    src = tmp_path / "src"
    write_images(src, {n: 1 for n in ("ant", "bee", "cat", "dog")}, size=(4, 4))
    plan = {"train": ["ant", "bee"], "val": ["cat"], "test": ["dog"]}
    (tmp_path / "split.json").write_text(json.dumps(plan))
    (tmp_path / "split.txt").write_text("# class,split\nant,train\nbee,train\ncat,val\n\ndog,test\n")
    for i, name in enumerate(("split.json", "split.txt")):
        store = open_store(prepare_folder(src, tmp_path / f"s{i}", split_file=tmp_path / name))
        assert assignment(store) == {n: s for s, ns in plan.items() for n in ns}
        assert store.manifest["split"] == "file" and store.manifest["split_ratios"] is None
    bad = {"missing.json": ({"train": ["ant", "bee"], "val": ["cat"]}, "'dog' is in no split"),
           "unknown.json": ({**plan, "test": ["dog", "eel"]}, "'eel' is not a class"),
           "twice.json": ({**plan, "val": ["cat", "ant"]}, "'ant' appears more than once"),
           "split.json": ({**plan, "holdout": ["dog"]}, "'dog' has split 'holdout'")}
    for name, (content, message) in bad.items():
        (tmp_path / name).write_text(json.dumps(content))
        with pytest.raises(UserError, match=message):
            prepare_folder(src, tmp_path / "bad", split_file=tmp_path / name)
    (tmp_path / "lines.txt").write_text("ant train\n")
    with pytest.raises(UserError, match="is not `class,split`"):
        prepare_folder(src, tmp_path / "bad", split_file=tmp_path / "lines.txt")
    with pytest.raises(UserError, match="pass only one"):
        prepare_folder(src, tmp_path / "bad", split_file=tmp_path / "split.txt", split_ratios=(1, 0, 0))
    assert not (tmp_path / "bad").exists()


def test_csv_and_json_file_lists_with_per_row_splits(tmp_path):
    images = write_images(tmp_path / "data", {n: 2 for n in ("ant", "bee", "cat", "dog", "eel")}, size=(6, 6))
    rows = [{"file": f"data/{n}/{p.name}", "class": n, "split": "test" if n == "cat" else ""}
            for n, items in images.items() for p, _ in items]
    with open(tmp_path / "list.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["file", "class", "split"])
        writer.writeheader()
        writer.writerows(reversed(rows))  # list order does not matter: classes and files are sorted
    store = open_store(prepare_folder(tmp_path / "list.csv", tmp_path / "a"))
    assert store.class_keys == ["ant", "bee", "cat", "dog", "eel"] and store.num_images == 10
    assert assignment(store)["cat"] == "test" and store.manifest["split"] == "list"
    assert np.array_equal(store.pixels(np.array([0]))[0], images["ant"][0][1])

    json_rows = [{"file": str(tmp_path / r["file"]), "class": r["class"],  # absolute paths, every class split
                  "split": "val" if r["class"] == "eel" else "train"} for r in rows]
    (tmp_path / "list.json").write_text(json.dumps(json_rows))
    store = open_store(prepare_folder(tmp_path / "list.json", tmp_path / "b"))
    assert assignment(store) == {"ant": "train", "bee": "train", "cat": "train", "dog": "train", "eel": "val"}
    assert store.manifest["split_ratios"] is None
    json_rows[1]["split"] = "test"  # the second "ant" row disagrees with the first
    (tmp_path / "list.json").write_text(json.dumps(json_rows))
    with pytest.raises(UserError, match="class 'ant' is in split 'test'.*all rows of a class must agree"):
        prepare_folder(tmp_path / "list.json", tmp_path / "c")
    (tmp_path / "nohead.csv").write_text("data/ant/img00.png,ant\n")
    with pytest.raises(UserError, match="needs a header line file,class"):
        prepare_folder(tmp_path / "nohead.csv", tmp_path / "c")
    (tmp_path / "gone.csv").write_text("file,class\ndata/ant/nothere.png,ant\n")
    with pytest.raises(UserError, match="nothere.png' does not exist"):
        prepare_folder(tmp_path / "gone.csv", tmp_path / "c")


def test_grayscale_resize_and_mixed_sizes(tmp_path):
    src = tmp_path / "src"
    write_images(src, {"a": 2, "b": 2}, size=(20, 30), ext="jpg")
    write_images(src, {"c": 2}, size=(16, 16), ext="jpeg", seed=1)
    with pytest.raises(UserError, match=r"images differ in size .* is 20x30, .* is 16x16\); pass --image-size N"):
        prepare_folder(src, tmp_path / "x", split_ratios=(0.34, 0.33, 0.33))
    assert not (tmp_path / "x").exists()
    store = open_store(prepare_folder(src, tmp_path / "s", image_size=12, grayscale=True,
                                      split_ratios=(0.34, 0.33, 0.33)))
    assert store.image_shape == (1, 12, 12)
    assert store.manifest["preprocess"] == {"image_size": 12, "mode": "L", "resample": "lanczos", "invert": False}
    first = src / "a" / "img00.jpg"
    with Image.open(first) as im:
        expected = np.asarray(im.convert("L").resize((12, 12), Image.LANCZOS))[:, :, None]
    got = store.pixels(np.array([0]))[0]
    assert np.array_equal(got, expected)
    assert np.array_equal(got, load_image_file(first, preprocess_spec(store.manifest), store.image_shape))
    with pytest.raises(UserError, match="positive integer"):
        prepare_folder(src, tmp_path / "y", image_size=0)


def test_unreadable_image_is_a_one_line_error_and_leaves_nothing(tmp_path):
    src = tmp_path / "src"
    images = write_images(src, {"a": 2, "b": 2, "c": 2})
    (src / "b" / "broken.png").write_bytes(b"this is not a png")
    with pytest.raises(UserError) as err:
        prepare_folder(src, tmp_path / "out")
    assert "broken.png" in str(err.value) and "\n" not in str(err.value)
    data = images["c"][1][0].read_bytes()
    (src / "b" / "broken.png").write_bytes(data[: len(data) // 2])  # a valid header, truncated pixels
    with pytest.raises(UserError, match="broken.png' is not a readable image"):
        prepare_folder(src, tmp_path / "out", split_ratios=(0.34, 0.33, 0.33))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no store, no temporary directory
    with pytest.raises(UserError, match="broken.png"):
        load_image_file(src / "b" / "broken.png", {"mode": "RGB"}, (3, 8, 10))


def test_sources_with_too_few_classes(tmp_path):
    write_images(tmp_path / "one", {"only": 3})
    with pytest.raises(UserError, match="holds 1 class.*at least 2"):
        prepare_folder(tmp_path / "one", tmp_path / "s")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no class folders"):
        prepare_folder(tmp_path / "empty", tmp_path / "s")
    (tmp_path / "one" / "texts").mkdir()
    (tmp_path / "one" / "texts" / "a.txt").write_text("x")
    with pytest.raises(UserError, match="texts' holds no image files"):
        prepare_folder(tmp_path / "one", tmp_path / "s")
    with pytest.raises(UserError, match="does not exist"):
        prepare_folder(tmp_path / "nowhere", tmp_path / "s")


class TensorImages(torch.utils.data.Dataset):
    """In memory: (float tensor [C, H, W] in [0, 1], label), as torchvision's ToTensor gives."""

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        arr, label = self.items[i]
        return torch.from_numpy(arr).permute(2, 0, 1).float() / 255, label


def test_store_from_dataset_matches_the_folder_path(tmp_path):
    names = ["ant", "bee", "cat", "dog"]
    images = write_images(tmp_path / "src", {n: 3 for n in names})
    folder_store = open_store(prepare_folder(tmp_path / "src", tmp_path / "a", seed=4))
    # labels interleaved: rows are grouped by label, in dataset order within a label
    items = [(images[n][j][1], label) for j in range(3) for label, n in reversed(list(enumerate(names)))]
    ds_store = open_store(store_from_dataset(TensorImages(items), tmp_path / "b", seed=4, class_names=names))
    assert ds_store.manifest["images_sha256"] == folder_store.manifest["images_sha256"]
    assert assignment(ds_store) == assignment(folder_store) and ds_store.manifest["dataset"] == "folder"
    assert ds_store.manifest["class_names"] == names

    class Plain(torch.utils.data.Dataset):  # numpy [H, W] uint8 images, names from .classes
        classes = ["zero", "one", "two"]

        def __len__(self):
            return 6

        def __getitem__(self, i):
            return np.full((5, 7), 40 * i, dtype=np.uint8), i % 3

    store = open_store(store_from_dataset(Plain(), tmp_path / "c", grayscale=True, split_ratios=(0.34, 0.33, 0.33)))
    assert store.class_keys == ["zero", "one", "two"] and store.image_shape == (1, 5, 7)
    assert [int(store.pixels(np.array([r]))[0, 0, 0, 0]) for r in range(6)] == [0, 120, 40, 160, 80, 200]
    with pytest.raises(UserError, match="not an integer class id"):
        store_from_dataset(TensorImages([(images["ant"][0][1], 0.5)] * 2), tmp_path / "d")
    with pytest.raises(UserError, match=r"pixels span .*floats in \[0, 1\]"):
        store_from_dataset([(np.full((4, 4), 3.0), 0), (np.zeros((4, 4)), 1)], tmp_path / "d",
                           split_ratios=(0.5, 0.5, 0))


def test_preprocess_spec_of_stores_without_a_record(tmp_path):
    omni = {"dataset": "omniglot", "image_shape": [28, 28], "channels": 1}
    assert preprocess_spec(omni) == {"image_size": 28, "mode": "L", "resample": "lanczos", "invert": True}
    assert preprocess_spec({"dataset": "miniimagenet", "image_shape": [84, 84], "channels": 3})["mode"] == "RGB"
    assert preprocess_spec({"dataset": "other", "image_shape": [6, 5], "channels": 1}) == {
        "image_size": None, "mode": "L", "resample": "lanczos", "invert": False}
    with pytest.raises(UserError, match="no known preprocessing"):
        preprocess_spec({"dataset": "other", "image_shape": [6, 6], "channels": 2})
    # a raw 105x105 Omniglot drawing comes out exactly as `prepare omniglot` stores it
    drawing = Image.new("1", (105, 105), 1)
    drawing.paste(0, (20, 30, 60, 70))
    half = tmp_path / "images_background"
    (half / "A" / "character01").mkdir(parents=True)
    drawing.save(half / "A" / "character01" / "0001_01.png")
    stored = omniglot.load_drawing(omniglot.Drawing("A/character01", 1, "images_background/A/character01/0001_01.png",
                                                    half), {})
    raw = load_image_file(half / "A" / "character01" / "0001_01.png", preprocess_spec(omni), (1, 28, 28))
    assert np.array_equal(raw, stored) and raw.max() == 255 and raw[0, 0, 0] == 0


def test_cli_prepare_folder(tmp_path, capsys):
    write_images(tmp_path / "src", {n: 2 for n in ("ant", "bee", "cat", "dog")}, size=(9, 9))
    base = ["data", "prepare", "folder", "--source", str(tmp_path / "src")]
    code = cli.main(base + ["--out", str(tmp_path / "s"), "--image-size", "8", "--grayscale",
                            "--split-ratios", "0.5,0.25,0.25", "--seed", "7"])
    assert code == 0 and "wrote task store" in capsys.readouterr().err
    store = open_store(tmp_path / "s")
    assert store.image_shape == (1, 8, 8) and store.manifest["split_seed"] == 7
    assert store.manifest["num_classes_per_split"] == {"train": 2, "val": 1, "test": 1}
    code = cli.main(base + ["--out", str(tmp_path / "t"), "--split-ratios", "0.5,0.5,0.5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--split-ratios must be 3 non-negative numbers" in err[0]
    assert not (tmp_path / "t").exists()
    code = cli.main(["data", "prepare", "omniglot", "--source", str(tmp_path / "src"), "--out", str(tmp_path / "t"),
                     "--grayscale"])
    assert code == 2 and "applies only to `meta-dist data prepare folder`" in capsys.readouterr().err
