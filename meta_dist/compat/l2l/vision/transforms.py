"""learn2learn's vision task transforms: `RandomClassRotation`, one random rotation per class of a task.

Rotating a whole class (every drawing of a character by the same angle) makes a new class-like
variant of it, the augmentation of MAML's Omniglot experiments. As every compat transform, it
draws from the `rng` its Taskset passes (seeded per task and transform position), so a task's
rotations are the same in every process; called alone it uses a fresh OS-seeded generator, never
the global `random`.

The rotation is a per-item transform appended after the load (place the transform after LoadData,
as in learn2learn). It rotates the item's data counter-clockwise by the chosen angle: a tensor
[..., H, W] exactly with `torch.rot90` for multiples of 90 degrees, otherwise with torchvision's
`rotate` (nearest neighbour, zero fill, same size); a PIL image with `Image.rotate`. The label is
left as it is, so rotations are not extra labels.

`meta_dist.compat.l2l.bridge.TasksetFamily` records a task as dataset indices and labels only, so
it cannot carry these rotations: it rejects a pipeline holding RandomClassRotation with an error
naming it. Give the bridge a taskset without it (meta-dist's own `omniglot` task family has
rotation classes of its own).
"""
from __future__ import annotations

import random
from typing import Sequence

import torch
from PIL import Image

from meta_dist.compat.l2l.data.transforms import TaskTransform


def rotate(data, degrees: float):
    """`data` (a tensor [..., H, W] or a PIL image) rotated counter-clockwise by `degrees`, same size."""
    if isinstance(data, Image.Image):
        return data.rotate(degrees)
    if not isinstance(data, torch.Tensor) or data.dim() < 2:
        raise TypeError(f"RandomClassRotation rotates tensors [..., H, W] or PIL images, got "
                        f"{type(data).__name__}; place it after LoadData, on a dataset whose items hold images")
    quarters = degrees / 90.0
    if quarters == int(quarters):
        return torch.rot90(data, int(quarters) % 4, dims=(-2, -1))
    from torchvision.transforms import functional as TF

    return TF.rotate(data, degrees)


class RotateItem:
    """The per-item transform: rotates a loaded item's data (its first entry) by `degrees`.

    It has no `label()` on purpose: the bridge must not mistake a rotated item for the plain one.
    """

    def __init__(self, degrees: float):
        self.degrees = float(degrees)

    def __call__(self, item):
        if not isinstance(item, (tuple, list)):
            raise TypeError(f"RandomClassRotation got {type(item).__name__} instead of a loaded (data, label) "
                            f"item; place it after LoadData in the task transforms")
        item = list(item)
        item[0] = rotate(item[0], self.degrees)
        return item

    def __eq__(self, other):
        return isinstance(other, RotateItem) and other.degrees == self.degrees

    def __hash__(self):
        return hash(("RotateItem", self.degrees))

    def __repr__(self) -> str:
        return f"RandomClassRotation's rotation by {self.degrees:g} degrees"


class RandomClassRotation(TaskTransform):
    """Rotates every item of a class by one angle drawn from `degrees`, independently per class.

    Classes are the dataset's labels of the task's items, visited in first-appearance order, each
    drawing `rng.choice(degrees)`; every item of the class gets that class's rotation.
    """

    def __init__(self, dataset, degrees: Sequence[float]):
        super().__init__(dataset)
        self.degrees = [float(d) for d in degrees]
        if not self.degrees:
            raise ValueError("RandomClassRotation needs at least one angle in degrees")
        self._items = {d: RotateItem(d) for d in self.degrees}

    def rotations(self, task_description, rng: random.Random) -> dict:
        """The angle of each class (dataset label) present in `task_description`."""
        to_label = self.dataset.indices_to_labels
        classes = dict.fromkeys(to_label[dd.index] for dd in task_description)
        return {label: rng.choice(self.degrees) for label in classes}

    def __call__(self, task_description, rng: random.Random | None = None):
        rng = random.Random() if rng is None else rng
        task_description = self._start(task_description, rng)
        angles = self.rotations(task_description, rng)
        to_label = self.dataset.indices_to_labels
        for dd in task_description:
            dd.transforms.append(self._items[angles[to_label[dd.index]]])
        return task_description


__all__ = ["RandomClassRotation", "RotateItem", "rotate"]
