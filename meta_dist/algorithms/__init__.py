"""Meta-learning algorithms (pure torch + torch.func, never ray). `build(config, family)` picks one.

`algorithm.name` is a built-in, a plug-in's entry-point name or an import path naming a
`MetaAlgorithm` subclass; every one is constructed as `cls(config, family, device, model)`, where
`model` is the run's `ModelFactory` (None: the configured one).
"""
from __future__ import annotations

import torch

from meta_dist.algorithms.base import ChunkOutput, MetaAlgorithm
from meta_dist.config import Config
from meta_dist.errors import UserError
from meta_dist.tasks.spec import TaskFamily

BUILTIN = {
    "maml": "meta_dist.algorithms.maml:MAML", "fomaml": "meta_dist.algorithms.maml:MAML",
    "reptile": "meta_dist.algorithms.reptile:Reptile", "metasgd": "meta_dist.algorithms.metasgd:MetaSGD",
    "anil": "meta_dist.algorithms.anil:ANIL", "protonet": "meta_dist.algorithms.protonet:ProtoNet",
    "matchingnet": "meta_dist.algorithms.matching:MatchingNet", "siamese": "meta_dist.algorithms.siamese:Siamese",
    "proto_maml": "meta_dist.algorithms.proto_maml:ProtoMAML",
}


def algorithm_class(name: str) -> type[MetaAlgorithm]:
    from meta_dist import registry

    cls = registry.load("algorithm", BUILTIN.get(name, name))
    if not (isinstance(cls, type) and issubclass(cls, MetaAlgorithm)):
        raise UserError(f"config key 'algorithm.name' names {name!r}, which is not a subclass of "
                        f"meta_dist.algorithms.MetaAlgorithm")
    return cls


def build(config: Config, family: TaskFamily, device: torch.device | str = "cpu", model=None) -> MetaAlgorithm:
    name = config.algorithm.name
    if name in ("maml_rl", "rl2"):
        from meta_dist.algorithms.rl import build_rl_algorithm
        return build_rl_algorithm(config, family, device, model)
    return algorithm_class(name)(config, family, device, model)


__all__ = ["build", "algorithm_class", "ChunkOutput", "MetaAlgorithm"]
