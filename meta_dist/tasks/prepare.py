"""`meta-dist data prepare {omniglot,miniimagenet,cifarfs,folder}`: a dataset release -> an Arrow task store.

- omniglot: see `meta_dist.tasks.omniglot` (official zips, Vinyals or seeded random split).
- miniimagenet (Vinyals et al. 2016, Ravi & Larochelle 2017 split 64/16/20): a user-supplied copy, either
  `train/ val/ test/` folders of class folders of images, or the pickles
  `mini-imagenet-cache-{train,val,test}.pkl` (keys image_data [N, 84, 84, 3] uint8 and class_dict
  {class: [indices]}); stored as 84x84 RGB. It cannot be downloaded here.
- cifarfs (Bertinetto et al. 2019): torchvision's CIFAR-100 python files (`cifar-100-python/{train,test,meta}`),
  train and test images pooled per fine class (600 each), the paper's 64/16/20 class split; 32x32 RGB.
- folder: your own data, an image folder (one sub-folder per class) or a .csv/.json file list; see
  `meta_dist.tasks.folder` (seeded 64/16/20 class split, or --split-ratios / --split-file).

Pickles are read with a restricted unpickler that admits only numpy arrays and plain containers, so
a hostile file cannot run code.
"""
from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path
from typing import Iterator

import numpy as np

from meta_dist.errors import UserError
from meta_dist.progress import CountProgress
from meta_dist.tasks import folder, omniglot
from meta_dist.tasks.store import ImageRow, write_store

MINI_SIZE = 84
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SPLITS = ("train", "val", "test")

# CIFAR-FS class split (Bertinetto et al. 2019), as shipped with torchmeta's cifar-fs/{val,test}.json;
# the 64 train classes are the other fine classes of CIFAR-100.
CIFARFS_VAL = ("beaver", "otter", "flatfish", "shark", "lamp", "television", "beetle", "butterfly", "sea",
               "camel", "cattle", "crab", "crocodile", "maple_tree", "motorcycle", "tractor")
CIFARFS_TEST = ("whale", "poppy", "rose", "sweet_pepper", "telephone", "bed", "table", "wardrobe", "leopard",
                "plain", "chimpanzee", "fox", "snail", "worm", "baby", "man", "woman", "bicycle",
                "pickup_truck", "rocket")


class _ArrayUnpickler(pickle.Unpickler):
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays are expected)")
        return super().find_class(module, name)


def load_pickle(path: Path, encoding: str = "latin1"):
    try:
        with open(path, "rb") as f:
            return _ArrayUnpickler(f, encoding=encoding).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise UserError(f"'{path}' is not a readable pickle of arrays ({e}); it is corrupt or not the expected file") from None


def load_image(path: Path, size: int) -> np.ndarray:
    """[size, size, 3] uint8 RGB, LANCZOS-resized when the file is another size."""
    return folder.read_image(path, "RGB", (size, size))


# -- mini-ImageNet ------------------------------------------------------------------------------------
def _mini_from_pickles(source: Path) -> tuple[list, dict]:
    plan, class_splits = [], {}
    for split in SPLITS:
        data = load_pickle(source / f"mini-imagenet-cache-{split}.pkl")
        if not isinstance(data, dict) or "image_data" not in data or "class_dict" not in data:
            raise UserError(f"'{source / f'mini-imagenet-cache-{split}.pkl'}' lacks the keys image_data and class_dict")
        images = np.asarray(data["image_data"])
        if images.ndim != 4 or images.shape[1:] != (MINI_SIZE, MINI_SIZE, 3) or images.dtype != np.uint8:
            raise UserError(f"mini-imagenet-cache-{split}.pkl: image_data is {images.shape} {images.dtype}, "
                            f"expected [N, 84, 84, 3] uint8")
        for name in sorted(data["class_dict"]):
            plan.append((name, [images[int(i)] for i in data["class_dict"][name]]))
            class_splits[name] = [(split, 0)]
    return plan, class_splits


def _mini_from_folders(source: Path) -> tuple[list, dict]:
    plan, class_splits = [], {}
    for split in SPLITS:
        for class_dir in sorted(p for p in (source / split).iterdir() if p.is_dir()):
            files = sorted(p for p in class_dir.iterdir() if not p.name.startswith("."))
            bad = [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES or not p.is_file()]
            if bad:
                raise UserError(f"'{bad[0]}' is not an image file; mini-ImageNet class folders hold only JPEG/PNG images")
            plan.append((class_dir.name, files))
            class_splits[class_dir.name] = [(split, 0)]
    return plan, class_splits


def prepare_miniimagenet(source: Path, out: Path, progress) -> Path:
    if all((source / f"mini-imagenet-cache-{s}.pkl").is_file() for s in SPLITS):
        plan, class_splits = _mini_from_pickles(source)
    elif all((source / s).is_dir() for s in SPLITS):
        plan, class_splits = _mini_from_folders(source)
    else:
        raise UserError(f"--source '{source}' holds neither train/ val/ test/ class folders nor "
                        f"mini-imagenet-cache-{{train,val,test}}.pkl; mini-ImageNet cannot be downloaded, "
                        f"supply a copy in one of these layouts")
    if len(set(class_splits)) != len(plan):
        raise UserError(f"--source '{source}': a class name appears in more than one split")
    total = sum(len(items) for _, items in plan)

    def rows() -> Iterator[ImageRow]:
        done = 0
        for name, items in plan:
            for j, item in enumerate(items):
                pixels = item if isinstance(item, np.ndarray) else load_image(item, MINI_SIZE)
                yield ImageRow(name, np.ascontiguousarray(pixels), "", name, j)
                done += 1
                progress(done, total)

    return write_store(out, rows(), dataset="miniimagenet", split_name="ravi", image_shape=(3, MINI_SIZE, MINI_SIZE),
                       class_splits=class_splits, rotations=False, extra={"source": str(source)})


# -- CIFAR-FS -----------------------------------------------------------------------------------------
def _cifar_dir(source: Path) -> Path:
    for d in (source, source / "cifar-100-python"):
        if all((d / n).is_file() for n in ("train", "test", "meta")):
            return d
    raise UserError(f"--source '{source}' holds no cifar-100-python/{{train,test,meta}} (torchvision's CIFAR-100 "
                    f"python version); pass that folder or use --download")


def prepare_cifarfs(source: Path, out: Path, progress) -> Path:
    root = _cifar_dir(source)
    meta = load_pickle(root / "meta")
    try:
        fine, coarse = list(meta["fine_label_names"]), list(meta["coarse_label_names"])
        parts = [load_pickle(root / n) for n in ("train", "test")]
        data = np.concatenate([np.asarray(p["data"], dtype=np.uint8) for p in parts])
        labels = np.concatenate([np.asarray(p["fine_labels"]) for p in parts])
        coarse_labels = np.concatenate([np.asarray(p["coarse_labels"]) for p in parts])
    except (KeyError, TypeError) as e:
        raise UserError(f"'{root}' does not hold CIFAR-100 python pickles (missing {e})") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise UserError(f"'{root}': data is {data.shape}, expected [N, 3072] (CIFAR-100)")
    unknown = sorted(set(CIFARFS_VAL + CIFARFS_TEST) - set(fine))
    if len(fine) != 100 or unknown:
        raise UserError(f"'{root}': fine_label_names are not CIFAR-100's 100 classes (missing {unknown[:3]})")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    split_of = {**{n: "val" for n in CIFARFS_VAL}, **{n: "test" for n in CIFARFS_TEST}}
    class_splits = {name: [(split_of.get(name, "train"), 0)] for name in fine}
    order = np.argsort(labels, kind="stable")

    def rows() -> Iterator[ImageRow]:
        for j, i in enumerate(order):
            name = fine[labels[i]]
            yield ImageRow(name, np.ascontiguousarray(images[i]), coarse[coarse_labels[i]], name, int(j))
            progress(j + 1, len(order))

    return write_store(out, rows(), dataset="cifarfs", split_name="bertinetto", image_shape=(3, 32, 32),
                       class_splits=class_splits, rotations=False, extra={"source": str(root)})


# -- entry point --------------------------------------------------------------------------------------
def _download(dataset: str, root: Path) -> Path:
    if dataset == "omniglot":
        return omniglot.download(root)
    if dataset == "cifarfs":
        from torchvision.datasets import CIFAR100

        try:
            CIFAR100(str(root), train=True, download=True)
        except (OSError, RuntimeError, ValueError) as e:
            raise UserError(f"downloading CIFAR-100 failed ({type(e).__name__}: {e}); download "
                            f"cifar-100-python.tar.gz yourself, extract it and pass the folder with --source") from None
        return root
    if dataset == "folder":
        raise UserError("your own data cannot be downloaded; pass the image folder or file list with --source")
    raise UserError("mini-ImageNet cannot be downloaded; supply a copy with --source")


def _folder_options(args: argparse.Namespace) -> dict:
    """The `data prepare folder` options; set for another dataset they are a UserError, not silently ignored."""
    opts = {k: getattr(args, k, None) for k in ("image_size", "grayscale", "split_ratios", "split_file")}
    given = [k for k, v in opts.items() if v not in (None, False)]
    if args.dataset != "folder" and given:
        raise UserError(f"--{given[0].replace('_', '-')} applies only to `meta-dist data prepare folder`")
    opts["grayscale"] = bool(opts["grayscale"])
    opts["split_file"] = None if opts["split_file"] is None else Path(opts["split_file"])
    return opts


def main(args: argparse.Namespace) -> Path:
    out = Path(args.out)
    folder_opts = _folder_options(args)
    if args.download:
        source = _download(args.dataset, Path(args.source) if args.source else out.parent / f"{out.name}-download")
    elif not args.source:
        raise UserError(f"meta-dist data prepare {args.dataset} needs --source PATH (the dataset release) or --download")
    else:
        source = Path(args.source)
    if not source.exists():
        raise UserError(f"--source '{source}' does not exist")
    progress = CountProgress(f"prepare {args.dataset}")
    if args.dataset == "omniglot":
        path = omniglot.prepare(source, out, args.split, args.seed, progress)
    elif args.dataset == "miniimagenet":
        path = prepare_miniimagenet(source, out, progress)
    elif args.dataset == "folder":
        path = folder.prepare_folder(source, out, seed=args.seed, progress=progress, **folder_opts)
    else:
        path = prepare_cifarfs(source, out, progress)
    print(f"wrote task store {path}", file=sys.stderr)
    return path
