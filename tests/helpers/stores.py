"""Small generated image task stores for tests that need learnable classes of chosen sizes."""
from __future__ import annotations

import numpy as np

from meta_dist.tasks.store import ImageRow, write_store


def make_store(path, prefix: str, sizes: list[int], size: int = 16):
    """One train and one test class per entry of `sizes` (images per class), a class pattern plus noise."""
    rng = np.random.default_rng(len(prefix))
    rows, splits = [], {}
    for split in ("train", "test"):
        for c, n in enumerate(sizes):
            key = f"{prefix}/{split}{c:02d}"
            splits[key] = [(split, 0)]
            pattern = rng.random((size, size, 1)) < 0.3
            rows += [ImageRow(key, ((pattern ^ (rng.random((size, size, 1)) < 0.05)) * 255).astype(np.uint8),
                              prefix, key, d) for d in range(n)]
    return write_store(path, iter(rows), dataset="images", split_name="custom", image_shape=(1, size, size),
                       class_splits=splits, rotations=False)
