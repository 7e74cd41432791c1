"""Siamese networks for one-shot recognition (Koch, Zemel & Salakhutdinov 2015, "Siamese Neural
Networks for One-shot Image Recognition"), with the Conv-4 embedding instead of the paper's larger net.

Training is pair verification: every ordered pair of distinct images of an episode (support and
query together, so the pairs follow from the spec alone) gets the logit w . |e_i - e_j| + b and a
binary cross-entropy against "same class", positives and negatives weighted to contribute equally
(an N-way episode has about N times more different-class pairs). At test a query takes the class of
the support image with the highest same-class logit (the paper's one-shot rule). The verification
head lives in `meta.siamese.*` parameters, outside the embedding network.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from meta_dist.algorithms.metric import MetricAlgorithm

HEAD_W, HEAD_B = "meta.siamese.weight", "meta.siamese.bias"


class Siamese(MetricAlgorithm):
    def init_params(self, seed: int):
        params = super().init_params(seed)
        dim = self.embedding_dim()
        gen = torch.Generator().manual_seed(seed)
        bound = dim ** -0.5
        params[HEAD_W] = (torch.rand(1, dim, generator=gen) * 2 - 1) * bound
        params[HEAD_B] = torch.zeros(1)
        return params

    def pair_logits(self, params, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """[T, Na, D] x [T, Nb, D] -> [T, Na, Nb] same-class logits."""
        diff = (a.unsqueeze(2) - b.unsqueeze(1)).abs()
        return diff @ params[HEAD_W].squeeze(0) + params[HEAD_B]

    def scores(self, params, support, support_y, query, ways):
        logits = self.pair_logits(params, query, support)  # [T, Nq, Ns]
        per_class = logits.new_full((*logits.shape[:2], ways), float("-inf"))
        index = support_y.unsqueeze(1).expand_as(logits)
        return per_class.scatter_reduce(2, index, logits, reduce="amax")

    def task_loss(self, params, support, support_y, query, query_y, ways):
        e = torch.cat([support, query], dim=1)
        y = torch.cat([support_y, query_y], dim=1)
        logits = self.pair_logits(params, e, e)
        same = (y.unsqueeze(2) == y.unsqueeze(1)).to(logits.dtype)
        off_diag = 1.0 - torch.eye(e.shape[1], dtype=logits.dtype, device=logits.device)
        pos, neg = same * off_diag, (1.0 - same)
        bce = F.binary_cross_entropy_with_logits(logits, same, reduction="none")
        return 0.5 * ((bce * pos).sum((1, 2)) / pos.sum((1, 2)).clamp_min(1)
                      + (bce * neg).sum((1, 2)) / neg.sum((1, 2)).clamp_min(1))
