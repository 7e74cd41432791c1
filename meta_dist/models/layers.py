"""Building blocks shared by the convolutional networks (Conv-4, ResNet-12).

`batch_norm` always normalizes with statistics of the current batch and keeps no running buffers
(`track_running_stats=False` semantics, as MAML's reference code uses at test time; Finn et al.
2017), so a network built on it is a pure function of (parameters, inputs) and can be vmapped over
tasks with torch.func.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

BN_EPS = 1e-5


def batch_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stats_rows: int | None,
               eps: float = BN_EPS) -> torch.Tensor:
    """Per-channel batch norm of `x` [N, C, H, W] with the batch's own statistics.

    `stats_rows=None` uses all N rows; `stats_rows=n` normalizes every row with the mean and (biased)
    variance of the first n rows only, so rows after the n-th never influence any output: a task's
    support set first and its queries after it gives non-transductive evaluation in one pass.
    """
    if stats_rows is None:
        return F.batch_norm(x, None, None, weight, bias, training=True, eps=eps)
    ref = x[:stats_rows]
    mean = ref.mean((0, 2, 3), keepdim=True)
    var = ref.var((0, 2, 3), unbiased=False, keepdim=True)
    return (x - mean) * torch.rsqrt(var + eps) * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)
