"""Synthetic image task stores: random pixels written in the real store format.

Throughput does not depend on what the pixels show, so `meta-dist bench` measures image workloads on
random images when no `--data` is given (the reference loop's workload is random 28x28 inputs too). The
store goes through `store.write_store`, so workers read it through the same memory-mapped path, the
same rotation classes and the same normalization as a prepared dataset; only accuracy is meaningless.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

from meta_dist.tasks.names import IMAGE_DATASETS
from meta_dist.tasks.store import ImageRow, write_store



def write_synthetic_store(out_dir: str | os.PathLike, dataset: str = "omniglot", *, split_name: str = "random",
                          num_classes: tuple[int, int, int] = (32, 8, 8), per_class: int = 20,
                          seed: int = 0) -> Path:
    """A store of `dataset`-shaped random images: (train, val, test) base classes of `per_class` images.

    As in Omniglot's random split, each train class also appears rotated by 90/180/270 degrees.
    """
    c, h, w = IMAGE_DATASETS[dataset].shape
    rotations = dataset == "omniglot"
    class_splits: dict[str, list[tuple[str, int]]] = {}
    for split, count in zip(("train", "val", "test"), num_classes):
        for i in range(count):
            turns = range(4) if rotations and split == "train" else range(1)
            class_splits[f"synthetic/{split}{i:03d}"] = [(split, r) for r in turns]
    rng = np.random.default_rng(seed)

    def rows() -> Iterator[ImageRow]:
        for key in class_splits:
            for drawer in range(per_class):
                yield ImageRow(key, rng.integers(0, 256, size=(h, w, c), dtype=np.uint8), "synthetic",
                               key.split("/")[1], drawer)

    return write_store(out_dir, rows(), dataset=dataset, split_name=split_name, image_shape=(c, h, w),
                       class_splits=class_splits, rotations=rotations,
                       extra={"source": "synthetic", "preprocessing": f"uniform random uint8, seed {seed}"})
