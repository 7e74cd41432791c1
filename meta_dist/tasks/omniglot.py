"""Omniglot (Lake et al. 2015) from its official release into a task store.

Accepted sources, each half (`images_background`, `images_evaluation`) as a zip or an extracted folder:
a directory holding `images_background.zip` and `images_evaluation.zip`, the same extracted, or a
torchvision root (`<root>/omniglot-py/...`). Members must follow the official layout
`images_background/<Alphabet>/<characterNN>/<id>_<drawer>.png`. Each 105x105 drawing is resized to
28x28 (LANCZOS) and inverted (strokes = 255, i.e. 1.0 after scaling), as in the literature.

Class splits: `vinyals` reads `splits/vinyals/{train,val,test}.txt` found next to the zips (lines
`<Alphabet>/<characterNN>/rot<deg>`; ProtoNets / Matching Nets, 4112/688/1692 rotation classes);
`random` shuffles the characters with `--seed` (MAML / Reptile: 1100 train / 100 val / 423 test of 1623,
scaled proportionally for smaller sources) and makes the four rotations separate classes in train only.
`background` is Lake et al.'s split: the 30 alphabets of `images_background` train (less 4 of them,
chosen with `--seed`, held out whole for validation; scaled for smaller sources) and the 20 alphabets of
`images_evaluation` test, so every test character comes from an alphabet never seen in training;
rotations again only in train. The stored images are the 0-degree drawings; a rotation class points at
them and carries its quarter turns, applied when an episode is materialized (4x less disk and page
cache).
"""
from __future__ import annotations

import io
import os
import random
import re
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from meta_dist.errors import UserError
from meta_dist.tasks.store import ImageRow, write_store

HALVES = ("images_background", "images_evaluation")
SIZE = 28
SPLIT_FILES = ("train", "val", "test")
MAML_COUNTS = (1623, 100, 423)  # characters in all, val, test (Finn et al. 2017's omniglot split)
VAL_ALPHABETS = (30, 4)  # background alphabets, of which the `background` split validates on 4 (scaled)
IMAGE_NAME = re.compile(r"^(\d+)_(\d+)\.png$", re.IGNORECASE)
SPLIT_LINE = re.compile(r"^(.+/.+)/rot(000|090|180|270)$")


@dataclass(frozen=True)
class Drawing:
    key: str  # "<Alphabet>/<characterNN>"
    drawer: int
    member: str  # path inside the zip, or a file path
    half: Path   # the zip file or the extracted folder it came from


def locate(source: Path) -> dict[str, Path]:
    """The zip or folder of each half, looked up in `source` or a torchvision `omniglot-py` under it."""
    if not source.exists():
        raise UserError(f"--source '{source}' does not exist; pass the folder holding images_background.zip "
                        f"and images_evaluation.zip (or use --download)")
    if not source.is_dir():
        raise UserError(f"--source '{source}' is a file; pass the folder that holds images_background.zip "
                        f"and images_evaluation.zip")
    for root in (source, source / "omniglot-py"):
        found = {}
        for half in HALVES:
            if (root / half).is_dir():
                found[half] = root / half
            elif (root / f"{half}.zip").is_file():
                found[half] = root / f"{half}.zip"
        if len(found) == len(HALVES):
            return found
    raise UserError(f"--source '{source}' holds neither images_background.zip + images_evaluation.zip nor their "
                    f"extracted folders (nor a torchvision omniglot-py root); point --source at the Omniglot release")


def open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise UserError(f"'{path}' is not a readable zip file ({e}); it is corrupt or truncated, download it again") from None


def list_drawings(halves: dict[str, Path], zips: dict[Path, zipfile.ZipFile]) -> list[Drawing]:
    """Every drawing of both halves, checked against the official layout, in a stable order."""
    drawings = []
    for half, path in halves.items():
        if path.suffix == ".zip":
            zips[path] = zf = open_zip(path)
            members = [n for n in zf.namelist() if not n.endswith("/")]
        else:
            members = [str(Path(dp, f).relative_to(path.parent)).replace(os.sep, "/")
                       for dp, _, files in os.walk(path) for f in files]
        for member in members:
            parts = member.split("/")
            if any(p.startswith(".") or p == "__MACOSX" for p in parts):
                continue  # OS metadata (.DS_Store, __MACOSX/) is not data
            if len(parts) != 4 or parts[0] != half:
                raise UserError(f"'{path}': member '{member}' is not at {half}/<Alphabet>/<characterNN>/<image>.png; "
                                f"this is not the Omniglot release layout")
            match = IMAGE_NAME.match(parts[3])
            if match is None:
                kind = "a non-image file" if not parts[3].lower().endswith(".png") else "a PNG not named <id>_<drawer>.png"
                raise UserError(f"'{path}': '{member}' is {kind}; Omniglot folders hold only <id>_<drawer>.png drawings")
            drawings.append(Drawing(f"{parts[1]}/{parts[2]}", int(match.group(2)), member, path))
    if not drawings:
        raise UserError(f"no Omniglot drawings found in {', '.join(str(p) for p in halves.values())}")
    drawings.sort(key=lambda d: (HALVES.index(d.member.split("/")[0]), d.key, d.drawer, d.member))
    return drawings


def load_drawing(d: Drawing, zips: dict[Path, zipfile.ZipFile]) -> np.ndarray:
    """[28, 28, 1] uint8, strokes bright."""
    try:
        data = zips[d.half].read(d.member) if d.half in zips else (d.half.parent / d.member).read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            small = im.convert("L").resize((SIZE, SIZE), Image.LANCZOS)
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise UserError(f"'{d.half}': cannot read '{d.member}' ({e}); the zip is corrupt, download it again") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise UserError(f"'{d.half}': '{d.member}' is not a readable PNG image ({e})") from None
    return (255 - np.asarray(small, dtype=np.uint8))[:, :, None]


def vinyals_splits(split_dir: Path, keys: set[str]) -> dict[str, list[tuple[str, int]]]:
    out: dict[str, list[tuple[str, int]]] = {}
    for split in SPLIT_FILES:
        path = split_dir / f"{split}.txt"
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            match = SPLIT_LINE.match(line.strip())
            if match is None:
                raise UserError(f"{path}:{n}: '{line}' is not <Alphabet>/<characterNN>/rot<000|090|180|270>")
            out.setdefault(match.group(1), []).append((split, int(match.group(2)) // 90))
    missing = sorted(set(out) - keys)
    if missing:
        raise UserError(f"{split_dir} lists {len(missing)} characters the source lacks (first: {missing[0]}); "
                        f"the split files do not belong to this Omniglot copy")
    return out


def random_splits(keys: list[str], seed: int) -> dict[str, list[tuple[str, int]]]:
    """A seeded character split in MAML's proportions; train characters give four rotation classes."""
    order = sorted(keys)
    random.Random(seed).shuffle(order)
    total, val_of_all, test_of_all = MAML_COUNTS
    n = len(order)
    num_test = max(1, round(n * test_of_all / total))
    num_val = max(1, round(n * val_of_all / total))
    if n < 3 or num_test + num_val >= n:
        raise UserError(f"--split random needs at least 3 characters with images, found {n}")
    out = {}
    for i, key in enumerate(order):
        split = "test" if i < num_test else "val" if i < num_test + num_val else "train"
        out[key] = [(split, r) for r in range(4)] if split == "train" else [(split, 0)]
    return out


def background_splits(drawings: list[Drawing], seed: int) -> dict[str, list[tuple[str, int]]]:
    """Lake et al.'s split: background characters train (rotation classes included), but for whole
    background alphabets drawn with `seed` for validation (VAL_ALPHABETS); evaluation characters test."""
    half_of = {d.key: d.member.split("/", 1)[0] for d in drawings}
    background = sorted({k.split("/")[0] for k, h in half_of.items() if h == HALVES[0]})
    if len(background) < 2 or HALVES[1] not in half_of.values():
        raise UserError(f"--split background needs at least 2 alphabets in {HALVES[0]} and a character in "
                        f"{HALVES[1]}; the source has {len(background)} and "
                        f"{sum(h == HALVES[1] for h in half_of.values())}: point --source at the full release")
    total, held_out = VAL_ALPHABETS
    num_val = min(len(background) - 1, max(1, round(len(background) * held_out / total)))
    val = set(random.Random(seed).sample(background, num_val))
    out = {}
    for key, half in half_of.items():
        if half == HALVES[1]:
            out[key] = [("test", 0)]
        elif key.split("/")[0] in val:
            out[key] = [("val", 0)]
        else:
            out[key] = [("train", r) for r in range(4)]
    return out


def find_split_dir(source: Path, halves: dict[str, Path]) -> Path:
    candidates = [source / "splits" / "vinyals"] + [p.parent / "splits" / "vinyals" for p in halves.values()]
    for c in candidates:
        if all((c / f"{s}.txt").is_file() for s in SPLIT_FILES):
            return c
    raise UserError(f"--split vinyals needs splits/vinyals/{{train,val,test}}.txt next to the Omniglot zips "
                    f"(looked in {candidates[0]}); add them there or use --split random")


def download(root: Path) -> Path:
    """torchvision's download of both halves into `root`; a network failure is a UserError."""
    from torchvision.datasets import Omniglot

    try:
        for background in (True, False):
            Omniglot(str(root), background=background, download=True)
    except (OSError, RuntimeError, ValueError) as e:  # URLError is an OSError
        raise UserError(f"downloading Omniglot failed ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                        f"download images_background.zip and images_evaluation.zip yourself and pass their folder "
                        f"with --source") from None
    return root


def prepare(source: Path, out: Path, split: str, seed: int, progress: Callable[[int, int], None]) -> Path:
    halves = locate(source)
    zips: dict[Path, zipfile.ZipFile] = {}
    try:
        drawings = list_drawings(halves, zips)
        keys = sorted({d.key for d in drawings})
        if split == "vinyals":
            class_splits = vinyals_splits(find_split_dir(source, halves), set(keys))
        elif split == "background":
            class_splits = background_splits(drawings, seed)
        else:
            class_splits = random_splits(keys, seed)
        kept = [d for d in drawings if d.key in class_splits]
        if len(kept) < len(drawings):
            print(f"note: {len({d.key for d in drawings} - set(class_splits))} characters are in no split "
                  f"file and were left out", file=sys.stderr)

        def rows() -> Iterator[ImageRow]:
            for i, d in enumerate(kept):
                alphabet, character = d.key.split("/")
                yield ImageRow(d.key, load_drawing(d, zips), alphabet, character, d.drawer)
                progress(i + 1, len(kept))

        return write_store(out, rows(), dataset="omniglot", split_name=split, image_shape=(1, SIZE, SIZE),
                           class_splits=class_splits, rotations=True,
                           extra={"source": str(source), "split_seed": None if split == "vinyals" else seed,
                                  "preprocessing": "resize 105->28 LANCZOS, invert (strokes = 255)"})
    finally:
        for zf in zips.values():
            zf.close()
