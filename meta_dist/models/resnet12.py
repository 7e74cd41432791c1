"""ResNet-12, the standard few-shot backbone (TADAM, Oreshkin et al. 2018; MetaOptNet, Lee et al. 2019).

Four residual blocks, by default of widths (64, 160, 320, 640). Each block is
3 x [3x3 conv (no bias), batch norm, LeakyReLU(0.1)] with no activation after the third batch norm,
plus a 1x1 conv + batch norm shortcut; the two are added, then LeakyReLU(0.1) and a 2x2 max-pool.
Global average pooling gives a `num_features`-wide embedding (the last width), followed by an
optional linear `head` (left off when `output_dim` is 0: an embedding network for metric methods).

Pooling floors odd sizes as the reference implementations do (mini-ImageNet 84 -> 42 -> 21 -> 10 -> 5,
Omniglot 28 -> 14 -> 7 -> 3 -> 1); a side already down to 1 is left unpooled, so any input of at
least 1x1 reaches the global average pooling with a non-empty map.

Every batch norm goes through `layers.batch_norm`: statistics of the current batch, no running
buffers, so the forward is a pure function of (parameters, inputs) and vmaps over tasks with
torch.func like Conv-4; `forward(x, stats_rows=n)` normalizes every row with the statistics of the
first n rows only (support-set statistics for non-transductive evaluation).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from meta_dist.models.layers import batch_norm

LEAK = 0.1
DEFAULT_WIDTHS = (64, 160, 320, 640)


def _norm(channels: int) -> nn.BatchNorm2d:
    """A holder for one batch norm's affine parameters (the forward uses `layers.batch_norm`)."""
    return nn.BatchNorm2d(channels, track_running_stats=False)


def _pool(x: torch.Tensor) -> torch.Tensor:
    """2x2 max-pool with floor semantics; a side of size 1 is kept as it is."""
    kh, kw = min(2, x.shape[-2]), min(2, x.shape[-1])
    return F.max_pool2d(x, (kh, kw), (kh, kw))


class ResidualBlock(nn.Module):
    """3 x [3x3 conv, BN, LeakyReLU] (no activation after the last BN) + [1x1 conv, BN] shortcut."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, padding=1, bias=False)
            for i in range(3))
        self.norms = nn.ModuleList(_norm(out_channels) for _ in range(3))
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.shortcut_norm = _norm(out_channels)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def forward(self, x: torch.Tensor, stats_rows: int | None = None) -> torch.Tensor:
        out = x
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            out = batch_norm(conv(out), norm.weight, norm.bias, stats_rows)
            if i < len(self.convs) - 1:
                out = F.leaky_relu(out, LEAK)
        residual = batch_norm(self.shortcut(x), self.shortcut_norm.weight, self.shortcut_norm.bias, stats_rows)
        out = _pool(F.leaky_relu(out + residual, LEAK))
        return self.dropout(out) if self.dropout is not None else out


class ResNet12(nn.Module):
    """ResNet-12 embedding network with an optional linear head.

    `dropout` (> 0) adds an nn.Dropout after each block. Dropout draws random numbers, so it is
    deterministic only under a seeded generator (the runtime seeds it per task chunk), and vmapping
    a training-mode forward needs `torch.func.vmap(..., randomness="different")` or `"same"`
    (the default `"error"` refuses random operations); in eval mode it is the identity.
    """

    def __init__(self, input_shape: tuple[int, int, int], output_dim: int = 0,
                 widths: tuple[int, ...] = DEFAULT_WIDTHS, dropout: float = 0.0):
        super().__init__()
        c, h, w = input_shape
        if h < 1 or w < 1 or not widths or min(widths) < 1:
            raise ValueError(f"ResNet12 needs H, W >= 1 and positive widths, got {input_shape}, {widths}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"ResNet12 dropout must be in [0, 1), got {dropout}")
        ins = (c, *widths[:-1])
        self.blocks = nn.ModuleList(ResidualBlock(i, o, dropout) for i, o in zip(ins, widths))
        self.num_features = widths[-1]
        self.head = nn.Linear(self.num_features, output_dim) if output_dim else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal convs (fan_out, leaky_relu with the network's slope), BN weight 1 and bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=LEAK, mode="fan_out", nonlinearity="leaky_relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, stats_rows: int | None = None) -> torch.Tensor:
        """[N, C, H, W] -> [N, output_dim], or the [N, num_features] embedding without a head."""
        for block in self.blocks:
            x = block(x, stats_rows)
        x = x.mean((2, 3))
        return self.head(x) if self.head is not None else x


def resnet12(input_shape: tuple[int, int, int], output_dim: int = 0, **kwargs) -> nn.Module:
    """Model factory: `resnet12(input_shape, output_dim, widths=(64, 160, 320, 640), dropout=0.0)`.

    `widths` may be any sequence of ints (a list from a config file is fine); an unknown keyword
    raises TypeError.
    """
    widths: Sequence[int] = kwargs.pop("widths", DEFAULT_WIDTHS)
    dropout = float(kwargs.pop("dropout", 0.0))
    if kwargs:
        raise TypeError(f"resnet12 got unexpected keyword arguments {sorted(kwargs)}")
    return ResNet12(tuple(input_shape), output_dim, tuple(int(w) for w in widths), dropout)
