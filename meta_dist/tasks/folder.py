"""Your own data -> a task store: an ImageFolder tree, a CSV/JSON file list, or a labelled torch Dataset.

Each class folder (each `class` of a list, each label of a Dataset) becomes one base class; classes are
split into train / val / test (seeded 64/16/20 ratios, a split file, or a list's `split` column) and
written class-contiguous by `store.write_store`, one split and one write path for all three sources.
Trade-off: images are converted and LANCZOS-resized once, here, and stored as raw uint8 at one shape,
so episodes never decode files and workers share the bytes through the page cache, but a new size or
colour mode means preparing again; `preprocess_spec` / `load_image_file` replay it on new raw files.
"""
from __future__ import annotations

import csv
import io
import json
import math
import operator
import random
import sys
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from meta_dist.errors import UserError
from meta_dist.tasks.names import IMAGE_DATASETS
from meta_dist.tasks.store import SPLITS, ImageRow, write_store

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
DEFAULT_RATIOS = (0.64, 0.16, 0.20)  # the usual few-shot class split (mini-ImageNet's 64/16/20)
MODE_CHANNELS = {"L": 1, "RGB": 3}
DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)


# -- pixels -------------------------------------------------------------------------------------------
def to_pixels(im: Image.Image, mode: str, size: tuple[int, int] | None = None, invert: bool = False) -> np.ndarray:
    """[H, W, C] uint8: `im` converted to `mode`, LANCZOS-resized to (H, W) when it differs, maybe inverted."""
    im = im.convert(mode)
    if size is not None and im.size != (size[1], size[0]):
        im = im.resize((size[1], size[0]), Image.LANCZOS)
    arr = np.asarray(im, dtype=np.uint8)
    arr = 255 - arr if invert else arr
    return np.ascontiguousarray(arr.reshape(arr.shape[0], arr.shape[1], -1))


def _with_image(path: Path, use: Callable[[Image.Image], object]):
    try:
        with Image.open(path) as im:
            return use(im)
    except DECODE_ERRORS as e:
        why = (str(e).strip() or type(e).__name__).splitlines()[0]
        raise UserError(f"'{path}' is not a readable image ({why})") from None


def read_image(path: Path, mode: str = "RGB", size: tuple[int, int] | None = None, invert: bool = False) -> np.ndarray:
    """`to_pixels` of an image file; an unreadable file is a one-line UserError naming it."""
    return _with_image(path, lambda im: to_pixels(im, mode, size, invert))


def as_pil(image, what: str = "image") -> Image.Image:
    """A PIL image from a PIL image, a numpy array [H, W] / [H, W, C] or a torch tensor [C, H, W] / [H, W]
    (uint8, or float in [0, 1] as torchvision's ToTensor gives)."""
    if isinstance(image, Image.Image):
        return image
    torch = sys.modules.get("torch")  # only a dataset that yields tensors needs torch imported
    if torch is not None and isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        arr = (t.float() if t.is_floating_point() else t).numpy()
        arr = arr.transpose(1, 2, 0) if arr.ndim == 3 else arr
    elif isinstance(image, np.ndarray):
        arr = image
    else:
        raise UserError(f"{what}: image is a {type(image).__name__}; expected a PIL image, numpy array or torch tensor")
    arr = arr[:, :, 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise UserError(f"{what}: image shape {tuple(image.shape)} is not [H, W], [H, W, C] or torch [C, H, W]")
    if arr.dtype != np.uint8:
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if arr.dtype.kind != "f" or not (0 <= lo and hi <= 1):  # also rejects NaN
            raise UserError(f"{what}: {arr.dtype} pixels span {lo}..{hi}; pass uint8 or floats in [0, 1]")
        arr = np.round(arr * 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(arr))


# -- the preprocessing of a store ---------------------------------------------------------------------
def preprocess_spec(manifest: dict) -> dict:
    """How a store's images were preprocessed: its "preprocess" record, or what its dataset implies."""
    if isinstance(manifest.get("preprocess"), dict):
        return {"image_size": None, "resample": "lanczos", "invert": False, **manifest["preprocess"]}
    h, w = (int(x) for x in manifest["image_shape"])
    dataset = manifest.get("dataset")
    # the built-in datasets' stores carry no "preprocess" record; Omniglot's are inverted (strokes bright)
    mode = (IMAGE_DATASETS[dataset].mode if dataset in IMAGE_DATASETS else None) or {1: "L", 3: "RGB"}.get(manifest.get("channels"))
    if mode is None:
        raise UserError(f"a '{dataset}' task store with {manifest.get('channels')} channels has no known "
                        f"preprocessing; only 1-channel (grayscale) and 3-channel (RGB) stores do")
    return {"image_size": h if h == w else None, "mode": mode, "resample": "lanczos", "invert": dataset == "omniglot"}


def load_image_file(path: Path, preprocess: dict, image_shape: tuple[int, int, int]) -> np.ndarray:
    """A raw image file -> [H, W, C] uint8 exactly as a store of `image_shape` (C, H, W) holds its images;
    always resized to the store's (H, W), so files of any size work."""
    c, h, w = (int(x) for x in image_shape)
    mode = preprocess.get("mode")
    if MODE_CHANNELS.get(mode) != c or preprocess.get("resample", "lanczos") != "lanczos":
        raise UserError(f"preprocessing {preprocess} does not fit a {c}-channel store (modes L / RGB, resample "
                        f"lanczos); the store's manifest is inconsistent, prepare the store again")
    return read_image(Path(path), mode, (h, w), bool(preprocess.get("invert", False)))


# -- sources ------------------------------------------------------------------------------------------
class Source(NamedTuple):
    label: str  # what the user passed, for messages and the manifest's "source"
    classes: list[tuple[str, list]]  # (class name, items) in store order; an item is a file or a dataset index
    sizes: list[tuple[str, tuple[int, int]]]  # (item, (W, H)) of every item, to find the shared size
    pixels: Callable[[object, str, tuple[int, int]], np.ndarray]  # item, mode, (H, W) -> [H, W, C] uint8
    fixed: dict[str, str]  # class -> split named by the source itself (a list's `split` column)


def _folder_classes(source: Path) -> list[tuple[str, list[Path]]]:
    dirs = sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        raise UserError(f"--source '{source}' holds no class folders; lay it out as {source}/<class>/<image> "
                        f"(one sub-folder per class) or pass a .csv/.json file list")
    classes = []
    for d in dirs:
        rel = sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file())
        files = [d / r for r in rel if Path(r).suffix.lower() in IMAGE_EXTENSIONS
                 and not any(part.startswith(".") for part in r.split("/"))]  # skip .DS_Store, .git/
        if not files:
            raise UserError(f"class folder '{d}' holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}); "
                            f"add images or remove the folder")
        classes.append((d.name, files))
    return classes


def _read_list(path: Path) -> list[dict]:
    try:
        text = path.read_text(encoding="utf-8-sig")
        rows = json.loads(text) if path.suffix.lower() == ".json" else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"file list '{path}' cannot be read ({e})") from None
    if rows is None:
        reader = csv.DictReader(io.StringIO(text))
        if not {"file", "class"} <= {f.strip() for f in reader.fieldnames or ()}:
            raise UserError(f"file list '{path}' needs a header line file,class[,split]; got {reader.fieldnames}")
        rows = [{(k or "").strip(): v for k, v in row.items()} for row in reader]
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise UserError(f"file list '{path}' must be a JSON list of objects with keys file, class[, split]")
    return rows


def _list_classes(path: Path) -> tuple[list[tuple[str, list[Path]]], dict[str, str]]:
    items, split_of = {}, {}  # class -> files, class -> the split its first row names ("" for none)
    for n, row in enumerate(_read_list(path), 1):
        file, name, split = (str(row.get(k) or "").strip() for k in ("file", "class", "split"))
        if not file or not name or (split and split not in SPLITS):
            raise UserError(f"file list '{path}' row {n}: needs a file, a class and an optional split in "
                            f"{', '.join(SPLITS)}; got {row}")
        if split_of.setdefault(name, split) != split:
            raise UserError(f"file list '{path}' row {n}: class '{name}' is in split '{split or '(none)'}' but an "
                            f"earlier row put it in '{split_of[name] or '(none)'}'; all rows of a class must agree")
        file_path = path.parent / file  # relative paths resolve against the list's folder
        if not file_path.is_file():
            raise UserError(f"file list '{path}' row {n}: '{file_path}' does not exist")
        items.setdefault(name, []).append(file_path)
    return [(name, sorted(items[name], key=str)) for name in sorted(items)], {n: s for n, s in split_of.items() if s}


def _dataset_item(dataset, i: int) -> tuple[Image.Image, int]:
    item = dataset[i]
    if not isinstance(item, (tuple, list)) or len(item) < 2:
        raise UserError(f"dataset item {i} is a {type(item).__name__}; expected an (image, label) pair")
    try:
        label = operator.index(item[1])
    except TypeError:
        raise UserError(f"dataset item {i}: label {item[1]!r} is not an integer class id") from None
    return as_pil(item[0], f"dataset item {i}"), label


def _dataset_source(dataset, class_names) -> Source:
    if not hasattr(dataset, "__len__"):
        raise UserError(f"{type(dataset).__name__} has no len(); store_from_dataset needs a map-style Dataset")
    by_label, sizes = {}, []
    for i in range(len(dataset)):  # one pass: the items of each label and every image's size
        image, label = _dataset_item(dataset, i)
        by_label.setdefault(label, []).append(i)
        sizes.append((f"dataset item {i}", image.size))
    labels = sorted(by_label)
    names = class_names if class_names is not None else getattr(dataset, "classes", None)
    if names is not None and any(not 0 <= lab < len(names) for lab in labels):
        raise UserError(f"labels run {labels[0]}..{labels[-1]} but there are {len(names)} class names")
    named = [(str(lab) if names is None else str(names[lab]), by_label[lab]) for lab in labels]
    if len({name for name, _ in named}) < len(named):
        raise UserError("class names must be unique; two labels share a name in class_names / dataset.classes")
    return Source(f"{type(dataset).__name__} dataset", named, sizes,
                  lambda i, mode, size: to_pixels(_dataset_item(dataset, i)[0], mode, size), {})


# -- class splits -------------------------------------------------------------------------------------
def check_ratios(value) -> tuple[float, float, float]:
    """Split ratios from "TRAIN,VAL,TEST" or a sequence: 3 non-negative numbers summing to 1."""
    try:
        ratios = tuple(float(x) for x in (value.split(",") if isinstance(value, str) else value))
    except (TypeError, ValueError):
        ratios = ()
    if len(ratios) != 3 or not all(math.isfinite(r) and r >= 0 for r in ratios) or abs(sum(ratios) - 1) > 1e-6:
        raise UserError(f"--split-ratios must be 3 non-negative numbers TRAIN,VAL,TEST summing to 1 "
                        f"(e.g. 0.64,0.16,0.2), got '{value if isinstance(value, str) else repr(value)}'")
    return ratios


def split_classes(names: list[str], ratios: tuple[float, float, float], seed: int,
                  fixed: dict[str, str] | None = None) -> dict[str, str]:
    """Class -> split. Classes in `fixed` keep their split; the others, in sorted order, are shuffled by
    random.Random(seed) (never the global RNG: the same classes and seed split alike on every machine)
    and cut by `ratios`, so that every split with a ratio > 0 gets at least one class."""
    fixed = fixed or {}
    free = sorted(n for n in names if n not in fixed)
    random.Random(seed).shuffle(free)
    needed = [bool(free) and r > 0 and s not in fixed.values() for s, r in zip(SPLITS, ratios)]
    edges = [round(len(free) * sum(ratios[:i])) for i in range(3)] + [len(free)]  # cumulative: sums to len(free)
    counts = [edges[i + 1] - edges[i] for i in range(3)]
    for i in range(3):
        if needed[i] and counts[i] == 0:
            donor = max(range(3), key=lambda j: counts[j] - needed[j])
            if counts[donor] - needed[donor] < 1:
                raise UserError(f"{len(free)} classes cannot give each split with a ratio > 0 at least one class "
                                f"(ratios {ratios}); add classes or set a ratio to 0 with --split-ratios")
            counts[donor], counts[i] = counts[donor] - 1, 1
    cut = [split for split, k in zip(SPLITS, counts) for _ in range(k)]
    return {**fixed, **dict(zip(free, cut))}


def _split_file_pairs(path: Path) -> list[tuple[str, str]]:
    """(class, split) pairs of JSON {"train": [classes], "val": [...], "test": [...]} or lines `class,split`."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
        obj = json.loads(text) if text.lstrip().startswith("{") else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"--split-file '{path}' cannot be read ({e})") from None
    if obj is not None:
        if not all(isinstance(v, list) for v in obj.values()):
            raise UserError(f"--split-file '{path}' must map train / val / test to lists of class names")
        return [(str(name), str(split)) for split, members in obj.items() for name in members]
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip() and not line.startswith("#")]
    bad = next((f"{path}:{n}: '{line}'" for n, line in lines if "," not in line), None)
    if bad:
        raise UserError(f"--split-file {bad} is not `class,split`")
    return [tuple(part.strip() for part in line.rsplit(",", 1)) for _, line in lines]


def read_split_file(path: Path, names: list[str]) -> dict[str, str]:
    """Class -> split from a split file; every class of the source must appear exactly once."""
    known, out = set(names), {}
    for name, split in _split_file_pairs(path):
        problem = (f"has split '{split}', not one of {', '.join(SPLITS)}" if split not in SPLITS else
                   "appears more than once" if name in out else "is not a class of the source" if name not in known
                   else None)
        if problem:
            raise UserError(f"--split-file '{path}': class '{name}' {problem}; list every class exactly once")
        out[name] = split
    missing = [n for n in sorted(known) if n not in out]
    if missing:
        raise UserError(f"--split-file '{path}': class '{missing[0]}' is in no split ({len(missing)} classes "
                        f"missing); list every class exactly once")
    return out


def _assign_splits(src: Source, ratios, split_file, seed: int) -> tuple[dict[str, str], str, list | None]:
    """(class -> split, the manifest's split name, the ratios in force or None)."""
    names = [name for name, _ in src.classes]
    if split_file is not None:
        splits = read_split_file(split_file, names)
        clash = next((n for n in sorted(src.fixed) if src.fixed[n] != splits[n]), None)
        if clash is not None:
            raise UserError(f"class '{clash}' is in split '{src.fixed[clash]}' in the file list '{src.label}' "
                            f"but in '{splits[clash]}' in --split-file '{split_file}'")
        return splits, "file", None
    splits = split_classes(names, ratios, seed, src.fixed)
    return splits, ("list" if src.fixed else "ratios"), (list(ratios) if len(src.fixed) < len(names) else None)


# -- the one write path -------------------------------------------------------------------------------
def _check_options(image_size, split_ratios, split_file) -> tuple[float, float, float]:
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0):
        raise UserError(f"--image-size must be a positive integer, got {image_size!r}")
    if split_ratios is not None and split_file is not None:
        raise UserError("--split-ratios and --split-file both set the class split; pass only one")
    return check_ratios(DEFAULT_RATIOS if split_ratios is None else split_ratios)


def _store_size(image_size: int | None, sizes: list[tuple[str, tuple[int, int]]]) -> tuple[int, int]:
    """(H, W) of the store: --image-size, or the size all images already share."""
    if image_size is not None:
        return image_size, image_size
    (first, (w, h)), other = sizes[0], next((s for s in sizes if s[1] != sizes[0][1]), None)
    if other is not None:
        raise UserError(f"images differ in size ('{first}' is {w}x{h}, '{other[0]}' is {other[1][0]}x{other[1][1]}); "
                        f"pass --image-size N to resize every image to NxN")
    return h, w


def _build(out: Path, src: Source, *, image_size, grayscale, ratios, split_file, seed, progress) -> Path:
    if len(src.classes) < 2:
        raise UserError(f"'{src.label}' holds {len(src.classes)} class(es); N-way episodes need at least 2 classes")
    splits, split_name, used_ratios = _assign_splits(src, ratios, split_file, seed)
    size, mode = _store_size(image_size, src.sizes), "L" if grayscale else "RGB"

    def rows() -> Iterator[ImageRow]:
        flat = [(name, j, item) for name, items in src.classes for j, item in enumerate(items)]
        for done, (name, j, item) in enumerate(flat, 1):
            yield ImageRow(name, src.pixels(item, mode, size), "", name, j)
            if progress is not None:
                progress(done, len(flat))

    extra = {"source": src.label, "class_names": [name for name, _ in src.classes], "split_seed": seed,
             "split_ratios": used_ratios,
             "preprocess": {"image_size": image_size, "mode": mode, "resample": "lanczos", "invert": False}}
    return write_store(out, rows(), dataset="folder", split_name=split_name, image_shape=(MODE_CHANNELS[mode], *size),
                       class_splits={n: [(splits[n], 0)] for n, _ in src.classes}, rotations=False, extra=extra)


def prepare_folder(source: Path, out: Path, *, image_size: int | None = None, grayscale: bool = False,
                   split_ratios: tuple[float, float, float] | None = None, split_file: Path | None = None,
                   seed: int = 1, progress=None) -> Path:
    """An ImageFolder tree (one sub-folder per class) or a .csv/.json list of (file, class[, split]) -> a store."""
    source = Path(source)
    ratios = _check_options(image_size, split_ratios, split_file)
    if source.is_dir():
        classes, fixed = _folder_classes(source), {}
    elif source.is_file() and source.suffix.lower() in (".csv", ".json"):
        classes, fixed = _list_classes(source)
    else:
        why = "is not a folder or a .csv/.json list" if source.exists() else "does not exist"
        raise UserError(f"--source '{source}' {why}")
    sizes = [(str(p), _with_image(p, lambda im: im.size)) for _, files in classes for p in files]  # header only
    src = Source(str(source), classes, sizes, lambda p, mode, size: read_image(p, mode, size), fixed)
    return _build(Path(out), src, image_size=image_size, grayscale=grayscale, ratios=ratios,
                  split_file=None if split_file is None else Path(split_file), seed=seed, progress=progress)


def store_from_dataset(dataset, out: Path, *, image_size: int | None = None, grayscale: bool = False,
                       split_ratios: tuple[float, float, float] | None = None, seed: int = 1,
                       class_names=None, progress=None) -> Path:
    """A labelled map-style Dataset of (image, label) items -> a store, one base class per label (in label
    order), named by `class_names`, else `dataset.classes`, else str(label)."""
    ratios = _check_options(image_size, split_ratios, None)
    return _build(Path(out), _dataset_source(dataset, class_names), image_size=image_size, grayscale=grayscale,
                  ratios=ratios, split_file=None, seed=seed, progress=progress)
