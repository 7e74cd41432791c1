"""Conv-4 (Vinyals et al. 2016; Snell et al. 2017): 4 x [3x3 conv, batch norm, ReLU, 2x2 max-pool],
and MAML's strided variant (Finn et al. 2017: stride-2 convs instead of pooling, then a spatial mean).

Batch norm always uses the statistics of the current batch (`track_running_stats=False` semantics,
as MAML's reference code does at test time): there are no running buffers, so the forward is a pure
function of (parameters, inputs) and can be vmapped over tasks. `forward(x, stats_rows=n)` normalizes
every row with the statistics of the first n rows only: with a task's support set first and its
query after it, that gives support-statistics (non-transductive) evaluation in one pass, with no
query example seeing another. `out_features=0` leaves the head off (an embedding network).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from meta_dist.models.layers import BN_EPS, batch_norm


class Conv4(nn.Module):
    def __init__(self, input_shape: tuple[int, int, int], channels: int = 64, out_features: int = 0,
                 strided: bool = False):
        super().__init__()
        c, h, w = input_shape
        self.strided = strided
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        for i in range(4):
            self.convs.append(nn.Conv2d(c if i == 0 else channels, channels, 3, stride=2 if strided else 1, padding=1))
            self.norms.append(nn.BatchNorm2d(channels, track_running_stats=False))
            h, w = ((h + 1) // 2, (w + 1) // 2) if strided else (h // 2, w // 2)
        self.num_features = channels if strided else channels * h * w
        self.head = nn.Linear(self.num_features, out_features) if out_features else None

    def forward(self, x: torch.Tensor, stats_rows: int | None = None) -> torch.Tensor:
        for conv, norm in zip(self.convs, self.norms):
            x = conv(x)
            x = F.relu(batch_norm(x, norm.weight, norm.bias, stats_rows, BN_EPS))
            if not self.strided:
                x = F.max_pool2d(x, 2)
        x = x.mean((2, 3)) if self.strided else x.flatten(1)
        return self.head(x) if self.head is not None else x
