"""MAML-RL's trust-region outer step (TRPO, Schulman et al. 2015), the step of Finn et al. 2017's RL runs.

A chunk takes the step over its own tasks. Its episodes are sampled once, at the current parameters
theta_0: before each inner step and after the last. As functions of theta, with the pre-adaptation
episodes held fixed and theta' = adapt(theta) recomputed from them:

- the surrogate L(theta) = mean over tasks of -E[pi_theta'(a|s) / pi_theta_0'(a|s) * A] on the
  post-adaptation episodes (its gradient at theta_0 is the ordinary MAML meta-gradient);
- the mean KL divergence between the adapted policies at theta_0 and at theta, on the same states.

The step solves F x = grad L by conjugate gradients, F x being the KL's Hessian-vector product
(differentiated through the inner step), scales x so that the quadratic model of the KL equals
`rl.max_kl`, then backtracks until the surrogate improves with the KL within the bound; when no point
does, the step is zero. The chunk returns theta_0 - theta_new times its task count, which the runtime
averages as it averages Reptile's deltas (`algorithm.meta_optimizer: sgd`, `meta_lr: 1`). With
`runtime.chunk_size` equal to `meta_batch_size` that is the paper's step; with smaller chunks each
chunk steps on its own tasks and the runtime averages the steps. Chunks are fixed by the config, so
the result does not depend on the worker count, and a chunk keeps nothing between calls.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from meta_dist.algorithms.rl.common import Trajectories, gaussian_log_prob, pg_advantages, pg_loss

CG_ITERS = 10
CG_DAMPING = 1e-5
"""Added to the KL's Hessian (times the identity): keeps conjugate gradients well posed."""
BACKTRACK = 0.8
LINE_SEARCH_STEPS = 15

Params = dict[str, torch.Tensor]


def conjugate_gradient(hvp: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor,
                       iters: int = CG_ITERS, tol: float = 1e-10) -> torch.Tensor:
    """Approximately solve H x = b for symmetric positive definite H, given only x -> H x."""
    x, r, p = torch.zeros_like(b), b.clone(), b.clone()
    rr = r @ r
    for _ in range(iters):
        hp = hvp(p)
        alpha = rr / (p @ hp)
        x, r = x + alpha * p, r - alpha * hp
        rr_new = r @ r
        if rr_new < tol:
            break
        p, rr = r + (rr_new / rr) * p, rr_new
    return x


def gaussian_kl(mean_old: torch.Tensor, log_std_old: torch.Tensor, mean: torch.Tensor,
                log_std: torch.Tensor) -> torch.Tensor:
    """KL(old || new) of diagonal Gaussians, summed over the last (action) dimension."""
    var_old, var = torch.exp(2 * log_std_old), torch.exp(2 * log_std)
    return (log_std - log_std_old + (var_old + (mean_old - mean) ** 2) / (2 * var) - 0.5).sum(-1)


class ChunkObjective:
    """The surrogate and the KL of one chunk's tasks as functions of the flat meta-parameters."""

    def __init__(self, alg, base: Params, pres: Sequence[Trajectories], fast: Params, post: Trajectories):
        """`fast`: the adapted parameters the post-adaptation episodes were sampled with."""
        self.alg, self.pres, self.post = alg, list(pres), post
        self.names = list(base)
        self.shapes = [base[k].shape for k in self.names]
        self.theta0 = torch.cat([base[k].reshape(-1) for k in self.names])
        T, E, H, D = post.obs.shape
        self.obs, self.actions = post.obs.reshape(T, E * H, D), post.actions.reshape(T, E * H, -1)
        rl = alg.config.rl
        with torch.no_grad():
            self.advantages = pg_advantages(post, rl.discount, rl.gae_lambda)
        with torch.no_grad():
            self.old = alg.model.forward_tasks(fast, self.obs)
        self.old_log_prob = gaussian_log_prob(self.actions, *self.old).view(T, E, H)

    def unflatten(self, theta: torch.Tensor) -> Params:
        parts = torch.split(theta, [s.numel() for s in self.shapes])
        return {k: p.view(s) for k, p, s in zip(self.names, parts, self.shapes)}

    def policy(self, theta: torch.Tensor, create_graph: bool):
        """(mean, log_std) of the adapted policy on the post-adaptation states."""
        fast = self.alg.adapted(self.unflatten(theta), self.pres, create_graph)
        return self.alg.model.forward_tasks(fast, self.obs)

    def __call__(self, theta: torch.Tensor, create_graph: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(surrogate loss, mean KL), both averaged over the chunk's tasks."""
        mean, log_std = self.policy(theta, create_graph)
        mask = self.post.mask
        ratio = torch.exp(gaussian_log_prob(self.actions, mean, log_std).view_as(mask) - self.old_log_prob)
        kl = gaussian_kl(*self.old, mean, log_std).view_as(mask)
        kl = (kl * mask).sum((1, 2)) / mask.sum((1, 2)).clamp(min=1)
        return pg_loss(ratio, self.advantages, mask).mean(), kl.mean()


def trust_region_step(objective: ChunkObjective, max_kl: float) -> tuple[torch.Tensor, dict[str, float]]:
    """theta_new for the chunk, and its statistics (surrogate before, KL after, backtracking steps)."""
    theta = objective.theta0.clone().requires_grad_()
    loss, kl = objective(theta, create_graph=True)
    grad = torch.autograd.grad(loss, theta, retain_graph=True)[0]
    grad_kl = torch.autograd.grad(kl, theta, create_graph=True)[0]

    def hvp(v: torch.Tensor) -> torch.Tensor:
        return torch.autograd.grad(grad_kl @ v, theta, retain_graph=True)[0] + CG_DAMPING * v

    direction = conjugate_gradient(hvp, grad.detach())
    curvature = direction @ hvp(direction)
    stats = {"surrogate": float(loss.detach()), "kl": 0.0, "backtracks": float(LINE_SEARCH_STEPS)}
    if not (torch.isfinite(curvature) and curvature > 0):
        return objective.theta0, stats
    full = direction * torch.sqrt(2 * max_kl / curvature)
    for k in range(LINE_SEARCH_STEPS):
        candidate = objective.theta0 - BACKTRACK ** k * full.detach()
        new_loss, new_kl = objective(candidate, create_graph=False)
        if float(new_loss.detach()) < stats["surrogate"] and float(new_kl.detach()) <= max_kl:
            return candidate, {**stats, "kl": float(new_kl.detach()), "backtracks": float(k)}
    return objective.theta0, stats
