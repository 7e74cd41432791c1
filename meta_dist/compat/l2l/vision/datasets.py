"""learn2learn's vision datasets: `FullOmniglot`, every Omniglot character as one classification dataset.

The 1623 characters of both halves of the release (`images_background`, then `images_evaluation`)
are the classes 0..1622 and each of the 32,460 drawings is an item `(image, label)`: the original
105x105 drawing as a PIL image in mode "L" (strokes black on white, as the PNGs are) and the
character's label, with `transform` / `target_transform` applied to them when given.

Files are found and listed by `meta_dist.tasks.omniglot` (the same reader `meta-dist data prepare`
uses), so `root` may hold `images_background.zip` and `images_evaluation.zip`, their extracted
folders, or be a torchvision root with `omniglot-py/` under it. Nothing is downloaded.

Deviations from learn2learn, which concatenates torchvision's two Omniglot datasets:

* labels follow a fixed order: background before evaluation, and within a half sorted
  (alphabet, character) names, drawings in drawer order. torchvision numbers characters in directory
  listing order, which depends on the file system, so a given label need not name the same
  character in both libraries (the set of classes and their sizes are the same);
* `download=True` is refused with a message, since nothing is downloaded here;
* the per-item labels are the attribute `targets` (and the names of the classes `characters`), which
  `MetaDataset` reads instead of loading every image, so there is no bookkeeping file to cache.
"""
from __future__ import annotations

import io
import os
import zipfile
import zlib
from pathlib import Path
from typing import Callable

from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from meta_dist.errors import UserError
from meta_dist.tasks import omniglot

_EXPECTED = ("a folder holding images_background.zip and images_evaluation.zip, their extracted folders, "
             "or a torchvision root with omniglot-py/ under it")


def _locate(root: Path) -> dict[str, Path]:
    """The zip or folder of each half under `root`, with a message in FullOmniglot's own terms."""
    try:
        return omniglot.locate(root)
    except UserError:
        raise UserError(f"FullOmniglot: root '{root}' is not {_EXPECTED}; pass root= the folder of a local "
                        f"copy of the Omniglot release") from None


def _decode(data: bytes, where: str) -> Image.Image:
    """A PNG's bytes as a loaded PIL image in mode "L" (torchvision's Omniglot converts the same way)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("L")
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise UserError(f"FullOmniglot: {where} is not a readable PNG image ({err})") from None


class FullOmniglot(Dataset):
    """All 1623 Omniglot characters (background + evaluation) as one dataset of (image, label) items.

    `root`: the folder of a local copy of the release (see the module docstring). `transform` is
    applied to the PIL image, `target_transform` to the integer label. `download=True` raises a
    UserError: pass a local copy instead. `targets[i]` is item i's label and `characters[label]`
    its "<Alphabet>/<characterNN>" name.

    The dataset pickles without its open zip files (it reopens them where it is used next, also in
    a forked DataLoader worker), so it can travel to other processes inside a taskset.
    """

    def __init__(self, root, transform: Callable | None = None, target_transform: Callable | None = None,
                 download: bool = False):
        if download:
            raise UserError("FullOmniglot(download=True): meta_dist.compat.l2l downloads nothing; pass "
                            f"root= {_EXPECTED} (a local copy of the Omniglot release) and download=False")
        self.root = Path(root).expanduser()
        self.transform = transform
        self.target_transform = target_transform
        self._halves = _locate(self.root)
        self._zips: dict[Path, zipfile.ZipFile] = {}
        self._pid = os.getpid()
        self._drawings = omniglot.list_drawings(self._halves, self._zips)
        self.characters = list(dict.fromkeys(d.key for d in self._drawings))
        label_of = {key: label for label, key in enumerate(self.characters)}
        self.targets = [label_of[d.key] for d in self._drawings]

    def __len__(self) -> int:
        return len(self._drawings)

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for FullOmniglot's {len(self)} drawings")
        image, label = self.image(index), self.targets[index]
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return image, label

    def image(self, index: int) -> Image.Image:
        """Drawing `index` as stored: 105x105, mode "L", no transform applied."""
        drawing = self._drawings[index]
        zips = self._open_zips()
        try:
            if drawing.half in zips:
                data = zips[drawing.half].read(drawing.member)
            else:
                data = (drawing.half.parent / drawing.member).read_bytes()
        except (zipfile.BadZipFile, zlib.error, EOFError) as err:
            raise UserError(f"FullOmniglot: cannot read '{drawing.member}' from '{drawing.half}' ({err}); the "
                            f"zip is corrupt, replace it with an intact copy") from None
        return _decode(data, f"'{drawing.member}' in '{drawing.half}'")

    def _open_zips(self) -> dict[Path, zipfile.ZipFile]:
        # A forked process shares the parent's file offsets: reading through the parent's handles
        # from two processes would interleave their seeks, so each process opens its own.
        if self._pid != os.getpid():
            self._zips, self._pid = {}, os.getpid()
        for path in self._halves.values():
            if path.suffix == ".zip" and path not in self._zips:
                self._zips[path] = omniglot.open_zip(path)
        return self._zips

    def close(self) -> None:
        """Close the open zip files (they reopen on the next read)."""
        for handle in self._zips.values():
            handle.close()
        self._zips = {}

    def __getstate__(self):
        return {**self.__dict__, "_zips": {}}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"FullOmniglot(root='{self.root}', classes={len(self.characters)}, items={len(self)})"


__all__ = ["FullOmniglot"]
