"""The built-in task families by name, in one place: every list of task names elsewhere derives from here.
Plain constants, cheap to import (the registry checks config names against them)."""
from __future__ import annotations

from typing import NamedTuple


class ImageDataset(NamedTuple):
    shape: tuple[int, int, int]
    """(C, H, W) of the prepared images."""
    mode: str
    """PIL mode of the stored pixels (stores of these datasets carry no preprocessing record)."""


IMAGE_DATASETS = {"omniglot": ImageDataset((1, 28, 28), "L"), "miniimagenet": ImageDataset((3, 84, 84), "RGB"),
                  "cifarfs": ImageDataset((3, 32, 32), "RGB")}
"""The benchmark datasets that `meta-dist data prepare` turns into task stores."""
IMAGE_TASKS = ("images", *IMAGE_DATASETS)
"""Episodic N-way K-shot classification over a task store ("images": a store of the user's own images)."""
SUPERVISED_TASKS = ("sinusoid", *IMAGE_TASKS)
METAWORLD_TASKS = ("metaworld_ml1", "metaworld_ml10", "metaworld_ml45")
"""Meta-World's meta-RL benchmarks (the `metaworld` extra)."""
RL_TASKS = ("navigation2d", "bandits", "cheetah_vel", "cheetah_dir", *METAWORLD_TASKS)
"""Meta-RL families (the `rl` extra; Meta-World's need the `metaworld` one)."""
TASKS = SUPERVISED_TASKS + RL_TASKS
