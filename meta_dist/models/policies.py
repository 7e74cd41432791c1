"""Policies for meta-RL: a Gaussian MLP (MAML-RL) and GRU actor-critics (RL^2).

`GaussianMLPPolicy` follows Finn et al. 2017: 2 x 100 ReLU hidden layers, a linear mean head and a
state-independent log standard deviation, all of it adapted by the inner policy-gradient step.
`GRUPolicy` follows Duan et al. 2016: a GRU over the whole trial (its hidden state is carried
across episode boundaries), a categorical action head and a value head for the critic.
`GaussianGRUPolicy` is its continuous-action form (a mean head and a state-independent log standard
deviation), on torch's fused GRU so that a trial of thousands of steps is one call.

Both are plain nn.Modules; the algorithms run them functionally on per-task parameters, so each
offers a `forward_tasks(stacked, obs)` that takes parameters with a leading task dimension (MAML)
and batched kernels (one bmm per layer, one fused GRU-cell update per time step).
"""
from __future__ import annotations

import torch
from torch import nn

from meta_dist.models.mlp import MLP


class GaussianMLPPolicy(MLP):
    """The MLP's mean head plus a state-independent log standard deviation."""

    def __init__(self, obs_dim: int, action_dim: int, hidden_sizes=(100, 100), activation: str = "relu",
                 init_log_std: float = 0.0):
        super().__init__(obs_dim, tuple(hidden_sizes), action_dim, activation)
        self.log_std = nn.Parameter(torch.full((action_dim,), float(init_log_std)))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_std) of the action distribution; log_std broadcasts against the mean."""
        return super().forward(obs), self.log_std

    def forward_tasks(self, stacked: dict[str, torch.Tensor], obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-task parameters ([T, ...] each) on obs [T, N, obs_dim]: mean [T, N, A], log_std [T, 1, A]."""
        return super().forward_tasks(stacked, obs), stacked["log_std"].unsqueeze(1)


class GRUPolicy(nn.Module):
    """GRU actor-critic over a trial. Parameters are shared by all tasks (RL^2 does not adapt them)."""

    def __init__(self, obs_dim: int, num_actions: int, hidden_size: int = 128):
        super().__init__()
        self.hidden_size = hidden_size
        self.gru = nn.GRUCell(obs_dim, hidden_size)
        self.pi = nn.Linear(hidden_size, num_actions)
        self.v = nn.Linear(hidden_size, 1)
        with torch.no_grad():  # near-uniform initial policy, as is usual for actor-critic heads
            self.pi.weight.mul_(0.01)
            self.pi.bias.zero_()

    def forward(self, obs: torch.Tensor, h: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A sequence [B, L, obs_dim] from hidden state `h` (zeros if None): (logits [B, L, k],
        values [B, L], last hidden state [B, H]). Rollouts call it with L = 1 and carry `h`."""
        h = obs.new_zeros(obs.shape[0], self.hidden_size) if h is None else h
        logits, values = [], []
        for t in range(obs.shape[1]):
            h = self.gru(obs[:, t], h)
            logits.append(self.pi(h)), values.append(self.v(h).squeeze(-1))
        return torch.stack(logits, 1), torch.stack(values, 1), h


class GaussianGRUPolicy(nn.Module):
    """GRU actor-critic with a diagonal Gaussian action head, for RL^2 on continuous-action tasks."""

    def __init__(self, input_dim: int, action_dim: int, hidden_size: int = 128, init_log_std: float = 0.0):
        super().__init__()
        self.hidden_size = hidden_size
        self.gru = nn.GRU(input_dim, hidden_size, batch_first=True)
        self.mean = nn.Linear(hidden_size, action_dim)
        self.log_std = nn.Parameter(torch.full((action_dim,), float(init_log_std)))
        self.v = nn.Linear(hidden_size, 1)
        with torch.no_grad():  # near-zero initial mean actions
            self.mean.weight.mul_(0.01)
            self.mean.bias.zero_()

    def forward(self, obs: torch.Tensor, h: torch.Tensor | None = None
                ) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor, torch.Tensor]:
        """A sequence [B, L, input_dim] from hidden state `h` [B, H] (zeros if None): ((mean [B, L, A],
        log_std [A]), values [B, L], last hidden state [B, H])."""
        out, last = self.gru(obs, None if h is None else h.unsqueeze(0).contiguous())
        return (self.mean(out), self.log_std), self.v(out).squeeze(-1), last[0]
