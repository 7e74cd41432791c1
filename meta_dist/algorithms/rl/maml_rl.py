"""MAML for reinforcement learning (Finn, Abbeel & Levine 2017, Sec. 5.3), PPO/Adam-style variant.

Per task: sample `rl.num_episodes` episodes with the meta-policy, take `inner_steps` vanilla
policy-gradient steps (REINFORCE, advantages from a linear feature baseline fit on those episodes,
step size `algorithm.inner_lr`), sample fresh episodes with the adapted policy, and return the
gradient of their policy-gradient loss with respect to the meta-parameters, differentiated through
the inner step(s) (create_graph; `algorithm.first_order` cuts the graph as in first-order MAML).
As in the official implementation, the dependence of the pre-adaptation sampling distribution on
the meta-parameters is not differentiated (no DiCE / E-MAML term).

Difference from the paper: the paper's outer optimizer is TRPO. Here the runtime averages the
per-task meta-gradients and applies Adam (`algorithm.meta_lr`), the first-order "PPO/Adam-style
alternative": simpler, and identical in structure to supervised MAML, at the cost of no trust
region (a too-large meta_lr can collapse the policy; keep it ~1e-3 to 3e-3).

All tasks of a chunk are rolled out together (tensor environments, per-task parameters stacked
on a leading dimension) and every random draw comes from generators seeded by the spec, so a chunk
gives bitwise the same gradient on any CPU worker.
"""
from __future__ import annotations

from typing import Sequence

import torch

from meta_dist.algorithms.base import ChunkOutput, MetaAlgorithm
from meta_dist.algorithms.rl.common import (Trajectories, gaussian_log_prob, pg_advantages, pg_loss,
                                            rollout_gaussian)
from meta_dist.tasks.spec import TaskSpec

Params = dict[str, torch.Tensor]


class MAMLRL(MetaAlgorithm):
    @property
    def first_order(self) -> bool:
        return self.cfg.first_order

    @property
    def env_steps_per_task(self) -> int:
        """Environment steps of one task's meta-training rollouts: before each inner step, and after."""
        return (self.cfg.inner_steps + 1) * self.config.rl.num_episodes * self.family.horizon

    def rollout(self, fast: Params, specs: Sequence[TaskSpec], key: object) -> Trajectories:
        stacked = {k: v.detach() for k, v in fast.items()}
        return rollout_gaussian(self.model, stacked, self.family, specs, self.config.rl.num_episodes, key)

    def task_losses(self, fast: Params, traj: Trajectories) -> torch.Tensor:
        """Policy-gradient surrogate of each task on its episodes: [T] (differentiable in `fast`)."""
        T, E, H, D = traj.obs.shape
        mean, log_std = self.model.forward_tasks(fast, traj.obs.reshape(T, E * H, D))
        log_probs = gaussian_log_prob(traj.actions.reshape(T, E * H, -1), mean, log_std).view(T, E, H)
        with torch.no_grad():
            adv = pg_advantages(traj, self.config.rl.discount, self.config.rl.gae_lambda)
        return pg_loss(log_probs, adv, traj.mask)

    def adapt(self, fast: Params, traj: Trajectories, lr: float, create_graph: bool) -> Params:
        """One vanilla policy-gradient step per task on `traj`."""
        if not create_graph:
            fast = {k: v.detach().requires_grad_() for k, v in fast.items()}
        loss = self.task_losses(fast, traj).sum()
        names = list(fast)
        grads = torch.autograd.grad(loss, [fast[k] for k in names], create_graph=create_graph)
        return {k: fast[k] - lr * g for k, g in zip(names, grads)}

    def chunk_update(self, params: Params, specs: Sequence[TaskSpec]) -> ChunkOutput:
        base = {k: v.detach().cpu().requires_grad_() for k, v in params.items()}  # rollouts run on CPU
        fast = self.stack(base, len(specs))
        returns_pre = None
        for i in range(self.cfg.inner_steps):
            traj = self.rollout(fast, specs, ("train", i))
            returns_pre = traj.task_returns() if returns_pre is None else returns_pre
            fast = self.adapt(fast, traj, self.cfg.inner_lr, create_graph=not self.first_order)
        if self.first_order:
            fast = {k: v.detach().requires_grad_() for k, v in fast.items()}
        post = self.rollout(fast, specs, ("train", self.cfg.inner_steps))
        losses = self.task_losses(fast, post)
        wrt = fast if self.first_order else base
        names = list(base)
        grads = torch.autograd.grad(losses.sum(), [wrt[k] for k in names])
        out = {k: (g.sum(0) if self.first_order else g) for k, g in zip(names, grads)}
        metrics = {"meta_loss": float(losses.detach().sum()), **post.sums(), "return_pre": float(returns_pre.sum())}
        return ChunkOutput(out, len(specs), metrics)

    def eval_chunk(self, params: Params, specs: Sequence[TaskSpec], max_steps: int, inner_lr: float,
                   transductive_bn: bool = False) -> torch.Tensor:
        """Each task's metric (average return, or success rate) after 0..max_steps policy-gradient steps:
        [T, max_steps + 1]."""
        lr = inner_lr or self.cfg.inner_lr
        fast = self.stack({k: v.detach().cpu() for k, v in params.items()}, len(specs))
        curve = []
        for s in range(max_steps + 1):
            traj = self.rollout(fast, specs, ("eval", s))
            curve.append(traj.task_metric(self.family.metric))
            if s < max_steps:
                fast = {k: v.detach() for k, v in self.adapt(fast, traj, lr, create_graph=False).items()}
        return torch.stack(curve, 1)
