"""Meta-learning algorithms (pure torch + torch.func, never ray). `build(config, family)` picks one."""
from __future__ import annotations

import torch

from meta_dist.algorithms.base import ChunkOutput, MetaAlgorithm
from meta_dist.config import Config
from meta_dist.tasks.spec import TaskFamily


def build(config: Config, family: TaskFamily, device: torch.device | str = "cpu") -> MetaAlgorithm:
    name = config.algorithm.name
    if name in ("maml", "fomaml"):
        from meta_dist.algorithms.maml import MAML
        return MAML(config, family, device)
    if name == "reptile":
        from meta_dist.algorithms.reptile import Reptile
        return Reptile(config, family, device)
    if name == "metasgd":
        from meta_dist.algorithms.metasgd import MetaSGD
        return MetaSGD(config, family, device)
    if name == "anil":
        from meta_dist.algorithms.anil import ANIL
        return ANIL(config, family, device)
    if name == "protonet":
        from meta_dist.algorithms.protonet import ProtoNet
        return ProtoNet(config, family, device)
    if name == "matchingnet":
        from meta_dist.algorithms.matching import MatchingNet
        return MatchingNet(config, family, device)
    if name == "siamese":
        from meta_dist.algorithms.siamese import Siamese
        return Siamese(config, family, device)
    if name in ("maml_rl", "rl2"):
        from meta_dist.algorithms.rl import build_rl_algorithm
        return build_rl_algorithm(config, family, device)
    raise AssertionError(f"unvalidated algorithm name {name}")


__all__ = ["build", "ChunkOutput", "MetaAlgorithm"]
