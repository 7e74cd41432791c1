"""`meta-dist data prepare` on small generated sources in the real release formats: the official
Omniglot zips (and their extracted / torchvision forms), mini-ImageNet pickles and folders, CIFAR-100
python pickles; and the one-line errors for broken sources."""
from __future__ import annotations

import argparse
import io
import os
import pickle
import shutil
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from meta_dist import cli
from meta_dist.errors import UserError
from meta_dist.tasks import prepare
from meta_dist.tasks.store import open_store

BACKGROUND = {"Alpha": 3, "Beta": 2}  # alphabet -> characters
EVALUATION = {"Gamma": 2}
DRAWERS = 4


def png(seed: int) -> bytes:
    """A 105x105 1-bit drawing like Omniglot's: white background, a black stroke block."""
    im = Image.new("1", (105, 105), 1)
    x = 10 + 7 * (seed % 10)
    for i in range(x, x + 20):
        for j in range(30, 60):
            im.putpixel((i, j), 0)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def members(half: str, alphabets: dict) -> dict[str, bytes]:
    out, n = {}, 0
    for a, chars in alphabets.items():
        for c in range(1, chars + 1):
            n += 1
            for d in range(1, DRAWERS + 1):
                out[f"{half}/{a}/character{c:02d}/{n:04d}_{d:02d}.png"] = png(n + d)
    return out


def keys(alphabets: dict) -> list[str]:
    return [f"{a}/character{c:02d}" for a, chars in alphabets.items() for c in range(1, chars + 1)]


def write_zip(path: Path, files: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)


@pytest.fixture
def omniglot_src(tmp_path) -> Path:
    src = tmp_path / "omniglot"
    src.mkdir()
    write_zip(src / "images_background.zip", members("images_background", BACKGROUND))
    write_zip(src / "images_evaluation.zip", members("images_evaluation", EVALUATION))
    split_dir = src / "splits" / "vinyals"
    split_dir.mkdir(parents=True)
    all_keys = keys(BACKGROUND) + keys(EVALUATION)
    plan = {"train": all_keys[:4], "val": all_keys[4:5], "test": all_keys[5:]}
    for split, ks in plan.items():
        (split_dir / f"{split}.txt").write_text("".join(f"{k}/rot{r:03d}\n" for k in ks for r in (0, 90, 180, 270)))
    return src


def run(dataset, source, out, split="vinyals", seed=1, download=False) -> Path:
    return prepare.main(argparse.Namespace(dataset=dataset, source=str(source) if source else None, out=str(out),
                                           split=split, download=download, seed=seed))


def test_omniglot_vinyals_from_the_official_zips(omniglot_src, tmp_path):
    store = open_store(run("omniglot", omniglot_src, tmp_path / "store"))
    assert store.num_images == 7 * DRAWERS and store.image_shape == (1, 28, 28)
    assert [len(store.split_classes(s)) for s in ("train", "val", "test")] == [16, 4, 8]
    assert store.class_keys[store.split_classes("val")[1]] == "Beta/character02/rot090"
    assert store.manifest["split"] == "vinyals" and store.manifest["rotations"] is True
    img = store.pixels(np.array([0]))[0, :, :, 0]
    assert img.max() == 255 and img[0, 0] == 0  # inverted: strokes bright, background dark
    assert store.column("drawer")[:DRAWERS] == [1, 2, 3, 4]


def test_extracted_folders_and_torchvision_root_give_the_same_store(omniglot_src, tmp_path):
    reference = open_store(run("omniglot", omniglot_src, tmp_path / "a")).manifest["images_sha256"]
    extracted = tmp_path / "extracted"
    tv = extracted / "omniglot-py"
    tv.mkdir(parents=True)
    for half in ("images_background", "images_evaluation"):
        with zipfile.ZipFile(omniglot_src / f"{half}.zip") as zf:
            zf.extractall(tv)
    (tv / "images_background" / ".DS_Store").write_bytes(b"junk")  # OS metadata is ignored
    shutil.copytree(omniglot_src / "splits", tv / "splits")
    assert open_store(run("omniglot", extracted, tmp_path / "b")).manifest["images_sha256"] == reference
    assert open_store(run("omniglot", tv, tmp_path / "c")).manifest["images_sha256"] == reference


def test_omniglot_random_split_is_seeded(omniglot_src, tmp_path):
    def assignment(seed, name):
        store = open_store(run("omniglot", omniglot_src, tmp_path / name, split="random", seed=seed))
        return {store.class_keys[i]: store.class_split[i] for i in range(len(store.class_keys))}

    a, b, c = assignment(1, "a"), assignment(1, "b"), assignment(2, "c")
    assert a == b and a != c
    base = {k.rsplit("/", 1)[0] for k in a}
    assert len(base) == 7
    rotated = [k for k in a if not k.endswith("rot000")]
    assert rotated and all(a[k] == "train" for k in rotated)  # rotation classes only in train
    assert {a[k] for k in a} == {"train", "val", "test"}


def test_missing_source_and_split_files(omniglot_src, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        run("omniglot", tmp_path / "nowhere", tmp_path / "s")
    with pytest.raises(UserError, match="needs --source"):
        run("omniglot", None, tmp_path / "s")
    shutil.rmtree(omniglot_src / "splits")
    with pytest.raises(UserError, match="splits/vinyals"):
        run("omniglot", omniglot_src, tmp_path / "s")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="holds neither images_background.zip"):
        run("omniglot", empty, tmp_path / "s")


def test_corrupt_zip_is_a_one_line_user_error(omniglot_src, tmp_path, capsys):
    data = (omniglot_src / "images_background.zip").read_bytes()
    (omniglot_src / "images_background.zip").write_bytes(data[: len(data) // 3])
    code = cli.main(["data", "prepare", "omniglot", "--source", str(omniglot_src), "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "corrupt" in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "s").exists()


def test_wrong_layout_and_non_image_files(omniglot_src, tmp_path):
    flat = {name.split("/", 1)[1]: data for name, data in members("images_background", BACKGROUND).items()}
    write_zip(omniglot_src / "images_background.zip", flat)  # no top-level images_background/ folder
    with pytest.raises(UserError, match="not the Omniglot release layout"):
        run("omniglot", omniglot_src, tmp_path / "s")
    files = members("images_background", BACKGROUND)
    files["images_background/Alpha/character01/notes.txt"] = b"hello"
    write_zip(omniglot_src / "images_background.zip", files)
    with pytest.raises(UserError, match="non-image file"):
        run("omniglot", omniglot_src, tmp_path / "s")
    files = members("images_background", BACKGROUND)
    files["images_background/Alpha/character01/9999_21.png"] = b"not a png"
    write_zip(omniglot_src / "images_background.zip", files)
    with pytest.raises(UserError, match="not a readable PNG"):
        run("omniglot", omniglot_src, tmp_path / "s")


def test_download_failure_points_to_source(monkeypatch, tmp_path):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "Omniglot", offline)
    with pytest.raises(UserError, match="--source"):
        run("omniglot", tmp_path / "dl", tmp_path / "s", download=True)


# -- mini-ImageNet and CIFAR-FS ------------------------------------------------------------------
def test_miniimagenet_from_pickles_and_folders(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "pkl"
    src.mkdir()
    for s, names in (("train", ["n01", "n02", "n03"]), ("val", ["n04"]), ("test", ["n05", "n06"])):
        images = rng.integers(0, 256, (3 * len(names), 84, 84, 3), dtype=np.uint8)
        class_dict = {n: list(range(3 * i, 3 * i + 3)) for i, n in enumerate(names)}
        with open(src / f"mini-imagenet-cache-{s}.pkl", "wb") as f:
            pickle.dump({"image_data": images, "class_dict": class_dict}, f)
    store = open_store(run("miniimagenet", src, tmp_path / "a"))
    assert store.image_shape == (3, 84, 84) and store.num_images == 18
    assert [len(store.split_classes(s)) for s in ("train", "val", "test")] == [3, 1, 2]
    with open(src / "mini-imagenet-cache-val.pkl", "rb") as f:
        val = pickle.load(f)
    n04 = store.class_keys.index("n04")
    assert np.array_equal(store.pixels(np.array([store.first_row[n04]]))[0], val["image_data"][0])

    folders = tmp_path / "folders"
    for s, names in (("train", ["n01", "n02"]), ("val", ["n03"]), ("test", ["n04"])):
        for n in names:
            (folders / s / n).mkdir(parents=True)
            for j in range(2):
                Image.fromarray(rng.integers(0, 256, (100, 90, 3), dtype=np.uint8)).save(folders / s / n / f"{j}.jpg")
    store = open_store(run("miniimagenet", folders, tmp_path / "b"))
    assert store.image_shape == (3, 84, 84) and store.num_images == 8
    (folders / "test" / "n04" / "readme.md").write_text("x")
    with pytest.raises(UserError, match="not an image file"):
        run("miniimagenet", folders, tmp_path / "c")
    with pytest.raises(UserError, match="cannot be downloaded"):
        run("miniimagenet", folders, tmp_path / "d", download=True)


def test_miniimagenet_pickle_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    for s in ("train", "val", "test"):
        with open(tmp_path / f"mini-imagenet-cache-{s}.pkl", "wb") as f:
            pickle.dump({"image_data": Evil(), "class_dict": {}}, f)
    with pytest.raises(UserError, match=r"refusing to load (posix|nt|os)\.system"):
        run("miniimagenet", tmp_path, tmp_path / "s")


def test_cifarfs_from_cifar100_python_pickles(tmp_path):
    fine = sorted(prepare.CIFARFS_VAL + prepare.CIFARFS_TEST + CIFARFS_TRAIN)
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name, per_class in (("train", 2), ("test", 1)):
        labels = [c for c in range(100) for _ in range(per_class)]
        data = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
        with open(root / name, "wb") as f:
            pickle.dump({"data": data, "fine_labels": labels, "coarse_labels": [c // 5 for c in labels]}, f)
    with open(root / "meta", "wb") as f:
        pickle.dump({"fine_label_names": fine, "coarse_label_names": [f"coarse{i}" for i in range(20)]}, f)
    store = open_store(run("cifarfs", tmp_path, tmp_path / "s"))
    assert store.image_shape == (3, 32, 32) and store.num_images == 300
    assert [len(store.split_classes(s)) for s in ("train", "val", "test")] == [64, 16, 20]
    assert set(store.num_rows) == {3}
    with open(root / "train", "rb") as f:
        first = pickle.load(f)["data"][0]  # class 0, channel-planar
    assert np.array_equal(store.pixels(np.array([0]))[0], first.reshape(3, 32, 32).transpose(1, 2, 0))
    (root / "meta").write_bytes(b"garbage")
    with pytest.raises(UserError, match="not a readable pickle"):
        run("cifarfs", tmp_path, tmp_path / "t")


CIFARFS_TRAIN = ("dolphin", "seal", "aquarium_fish", "ray", "trout", "orchid", "sunflower", "tulip", "bottle",
                 "bowl", "can", "cup", "plate", "apple", "mushroom", "orange", "pear", "clock", "keyboard", "chair",
                 "couch", "bee", "caterpillar", "cockroach", "bear", "lion", "tiger", "wolf", "bridge", "castle",
                 "house", "road", "skyscraper", "cloud", "forest", "mountain", "elephant", "kangaroo", "porcupine",
                 "possum", "raccoon", "skunk", "lobster", "spider", "boy", "girl", "dinosaur", "lizard", "snake",
                 "turtle", "hamster", "mouse", "rabbit", "shrew", "squirrel", "oak_tree", "palm_tree", "pine_tree",
                 "willow_tree", "bus", "train", "lawn_mower", "streetcar", "tank")


def test_omniglot_background_split_holds_out_whole_alphabets(tmp_path):
    """Lake et al.'s split: evaluation alphabets test, one seeded background alphabet validates."""
    src = tmp_path / "lake"
    src.mkdir()
    background = {"Alpha": 3, "Beta": 2, "Delta": 2}
    write_zip(src / "images_background.zip", members("images_background", background))
    write_zip(src / "images_evaluation.zip", members("images_evaluation", EVALUATION))

    def assignment(seed, name):
        store = open_store(run("omniglot", src, tmp_path / name, split="background", seed=seed))
        assert store.manifest["split"] == "background" and store.manifest["split_seed"] == seed
        return {store.class_keys[i]: store.class_split[i] for i in range(len(store.class_keys))}

    a = assignment(1, "a")
    assert a == assignment(1, "b")
    assert {k for k, s in a.items() if s == "test"} == {f"{k}/rot000" for k in keys(EVALUATION)}
    val = {k.split("/")[0] for k, s in a.items() if s == "val"}
    train = {k.split("/")[0] for k, s in a.items() if s == "train"}
    assert len(val) == 1 and val | train == set(background) and not val & train
    assert all(k.endswith("rot000") for k, s in a.items() if s != "train")
    assert sum(s == "train" for s in a.values()) == 4 * sum(background[x] for x in train)
    seeds = {frozenset(k.split("/")[0] for k, s in assignment(seed, f"s{seed}").items() if s == "val")
             for seed in range(2, 8)}
    assert len(seeds) > 1  # the held-out alphabet follows --seed


def test_omniglot_background_split_needs_both_halves(omniglot_src, tmp_path):
    (omniglot_src / "images_background.zip").unlink()
    write_zip(omniglot_src / "images_background.zip", members("images_background", {"Alpha": 2}))
    with pytest.raises(UserError, match="needs at least 2 alphabets in images_background.*has 1 and 2"):
        run("omniglot", omniglot_src, tmp_path / "s", split="background")
    assert not (tmp_path / "s").exists()
