"""Fully connected network for regression (MAML sinusoid: 1-40-40-1 ReLU; Reptile: 1-64-64-1 tanh)."""
from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self, in_features: int, hidden_sizes: tuple[int, ...], out_features: int, activation: str = "relu"):
        super().__init__()
        act = {"relu": nn.ReLU, "tanh": nn.Tanh}[activation]
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden_sizes:
            layers += [nn.Linear(width, h), act()]
            width = h
        layers.append(nn.Linear(width, out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def forward_tasks(self, stacked: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Batched over tasks: `stacked` holds one set of parameters per task ([T, ...] each), `x` is
        [T, N, in]. Equivalent to vmap over `forward`, but one baddbmm per layer runs ~2x faster
        forward and backward on these tiny layers (measured: 2.5 vs 6 ms for a 25-task MAML step)."""
        h = x
        linears = [i for i, m in enumerate(self.net) if isinstance(m, nn.Linear)]
        for i, layer in enumerate(self.net):
            if isinstance(layer, nn.Linear):
                w, b = stacked[f"net.{i}.weight"], stacked[f"net.{i}.bias"]
                h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            elif i < linears[-1]:
                h = layer(h)
        return h
