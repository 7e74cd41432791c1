"""Prototypical Networks (Snell, Swersky & Zemel 2017, "Prototypical Networks for Few-shot Learning").

Each class's prototype is the mean embedding of its support examples; a query's logits are the
negative squared Euclidean distances to the prototypes (`algorithm.distance: cosine` swaps in cosine
similarity, which the paper found worse), trained with cross-entropy on the query set.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from meta_dist.algorithms.metric import MetricAlgorithm


def prototypes(support: torch.Tensor, support_y: torch.Tensor, ways: int) -> torch.Tensor:
    """[T, ways, D] class means of the support embeddings [T, Ns, D]."""
    onehot = F.one_hot(support_y, ways).to(support.dtype)  # [T, Ns, ways]
    return torch.bmm(onehot.transpose(1, 2), support) / onehot.sum(1).unsqueeze(-1)


class ProtoNet(MetricAlgorithm):
    def scores(self, params, support, support_y, query, ways):
        return self.similarity(query, prototypes(support, support_y, ways))
