"""Shared meta-RL pieces: seeded rollouts, discounted returns, GAE, the linear feature baseline.

Everything works on [T, E, H] tensors (tasks x episodes x time), so a chunk of tasks is rolled out
and scored at once. Returns and GAE are one matmul with a [H, H] discount matrix instead of a
Python loop over time. Randomness: action noise is drawn up front, one generator per task seeded
by (spec.seed, rollout key), so a task's episodes do not depend on which chunk or worker runs it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from meta_dist.tasks.spec import TaskSpec, derive_seed

BASELINE_REG = 1e-5
"""Ridge term of the linear feature baseline (rllab's reg_coeff), raised x10 if the solve fails."""


@dataclass
class Trajectories:
    """A batch of episodes; everything [T, E, H, ...]; `mask` is 1 up to and including termination."""
    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    mask: torch.Tensor
    success: torch.Tensor | None = None
    """[T, E] bool: the episode succeeded at some step (families whose metric is "success")."""

    def task_returns(self) -> torch.Tensor:
        """Undiscounted return per episode, averaged over each task's episodes: [T]."""
        return (self.rewards * self.mask).sum(-1).mean(-1)

    def task_metric(self, metric: str) -> torch.Tensor:
        """Each task's evaluation metric: its fraction of successful episodes, or its average return: [T]."""
        return self.success.float().mean(-1) if metric == "success" else self.task_returns()

    def sums(self) -> dict[str, float]:
        """Training metrics summed over the tasks: the return, and the success rate where recorded."""
        out = {"return": float(self.task_returns().sum())}
        if self.success is not None:
            out["success"] = float(self.success.float().mean(-1).sum())
        return out


def task_generator(spec: TaskSpec, *key: object) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed("actions", spec.seed, *key))


def gaussian_noise(specs: Sequence[TaskSpec], key: object, shape: tuple[int, ...]) -> torch.Tensor:
    """Standard normal noise [T, *shape], one seeded generator per task."""
    return torch.stack([torch.randn(shape, generator=task_generator(s, key)) for s in specs])


def uniform_noise(specs: Sequence[TaskSpec], key: object, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.stack([torch.rand(shape, generator=task_generator(s, key)) for s in specs])


def gaussian_log_prob(actions: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Log density of a diagonal Gaussian, summed over the last (action) dimension."""
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z * z - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


@torch.no_grad()
def rollout_gaussian(model, stacked: dict[str, torch.Tensor], family, specs: Sequence[TaskSpec],
                     num_episodes: int, key: object) -> Trajectories:
    """`num_episodes` episodes per task with per-task parameters `stacked` (the task dimension first)."""
    T, E, H = len(specs), num_episodes, family.horizon
    env = family.vec_env(specs, E, key)
    noise = gaussian_noise(specs, key, (H, E, family.action_dim))
    obs = env.reset()
    alive = torch.ones(T, E)
    all_obs, all_actions, all_rewards, all_mask = [], [], [], []
    for t in range(H):
        mean, log_std = model.forward_tasks(stacked, obs)
        action = mean + torch.exp(log_std) * noise[:, t]
        next_obs, reward, terminated = env.step(action)
        all_obs.append(obs), all_actions.append(action), all_rewards.append(reward), all_mask.append(alive)
        alive = alive * (~terminated).float()
        obs = next_obs
    success = getattr(env, "success", None)
    return Trajectories(torch.stack(all_obs, 2), torch.stack(all_actions, 2), torch.stack(all_rewards, 2),
                        torch.stack(all_mask, 2), None if success is None else success.clone())


def discount_matrix(horizon: int, factor: float) -> torch.Tensor:
    """M[t, u] = factor^(u - t) for u >= t, else 0: `x @ M.T` sums the discounted future of x."""
    t = torch.arange(horizon, dtype=torch.float64)
    power = t.unsqueeze(0) - t.unsqueeze(1)
    return torch.where(power >= 0, factor ** power.clamp(min=0), torch.zeros(())).float()


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, discount: float) -> torch.Tensor:
    """R_t = sum_{u >= t} gamma^(u - t) r_u over the valid steps; [..., H] -> [..., H]."""
    return (rewards * mask) @ discount_matrix(rewards.shape[-1], discount).T


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, discount: float, lam: float) -> torch.Tensor:
    """Generalized advantage estimation (Schulman et al. 2016) over [..., H]; the value after the
    last valid step is 0 (the episode ended or the horizon was reached)."""
    next_values = torch.cat([values[..., 1:] * mask[..., 1:], torch.zeros_like(values[..., :1])], -1)
    deltas = (rewards + discount * next_values - values) * mask
    return (deltas @ discount_matrix(rewards.shape[-1], discount * lam).T) * mask


def normalize(x: torch.Tensor, mask: torch.Tensor, dims=(-2, -1), eps: float = 1e-8) -> torch.Tensor:
    """Zero mean, unit variance over the valid entries of `dims` (per task)."""
    n = mask.sum(dims, keepdim=True).clamp(min=1)
    mean = (x * mask).sum(dims, keepdim=True) / n
    var = (((x - mean) * mask) ** 2).sum(dims, keepdim=True) / n
    return (x - mean) / torch.sqrt(var + eps) * mask


def baseline_features(obs: torch.Tensor) -> torch.Tensor:
    """rllab's LinearFeatureBaseline features: [o, o^2, t, t^2, t^3, 1] with t = step / 100."""
    o = obs.clamp(-10.0, 10.0)
    H = obs.shape[-2]
    t = (torch.arange(H, dtype=obs.dtype) / 100.0).view(H, 1).expand(*obs.shape[:-1], 1)
    return torch.cat([o, o * o, t, t * t, t ** 3, torch.ones_like(t)], -1)


def fit_linear_baseline(features: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-task ridge regression of `targets` [T, E, H] on `features` [T, E, H, F] over valid steps;
    returns the fitted values [T, E, H] (0 where masked). Solved in float64 for stability."""
    T, F = features.shape[0], features.shape[-1]
    x = (features * mask.unsqueeze(-1)).reshape(T, -1, F).double()
    y = (targets * mask).reshape(T, -1, 1).double()
    xtx, xty = x.transpose(1, 2) @ x, x.transpose(1, 2) @ y
    eye = torch.eye(F, dtype=torch.float64)
    reg = BASELINE_REG
    for _ in range(6):
        w = torch.linalg.solve(xtx + reg * eye, xty)
        if torch.isfinite(w).all():
            break
        reg *= 10
    return (features.double() @ w.unsqueeze(1)).squeeze(-1).float() * mask


def pg_advantages(traj: Trajectories, discount: float, lam: float) -> torch.Tensor:
    """Advantages for a policy-gradient step: GAE over a linear feature baseline fit to the
    discounted returns of these same episodes, normalized per task (rllab's center_adv)."""
    returns = discounted_returns(traj.rewards, traj.mask, discount)
    values = fit_linear_baseline(baseline_features(traj.obs), returns, traj.mask)
    return normalize(gae(traj.rewards, values, traj.mask, discount, lam), traj.mask)


def pg_loss(log_probs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """REINFORCE surrogate per task: -mean over valid steps of log pi(a|s) * A; [T, E, H] -> [T]."""
    return -(log_probs * advantages * mask).sum((1, 2)) / mask.sum((1, 2)).clamp(min=1)
