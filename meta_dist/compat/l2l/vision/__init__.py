"""learn2learn.vision on meta-dist: `datasets.FullOmniglot`, `models.OmniglotCNN` / `models.OmniglotFC`
and `transforms.RandomClassRotation`, enough for learn2learn's Omniglot MAML script to run unchanged.

The networks are meta-dist's own Conv4 and MLP (their docstrings list where they differ from
learn2learn's), the dataset reads the release through `meta_dist.tasks.omniglot` and downloads
nothing, and the rotation is seeded per task like every other compat transform. Not covered:
learn2learn's other datasets (mini-ImageNet, tiered-ImageNet, CIFAR-FS, FC100, ...), its other
models (ResNet-12, WRN-28, CNN4 for 84x84 images, ...) and `vision.benchmarks` (`get_tasksets`).
"""
from meta_dist.compat.l2l.vision import datasets, models, transforms

__all__ = ["datasets", "models", "transforms"]
