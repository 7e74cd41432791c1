"""MAML for reinforcement learning (Finn, Abbeel & Levine 2017, Sec. 5.3).

Per task: sample `rl.num_episodes` episodes with the meta-policy, take `inner_steps` vanilla
policy-gradient steps (REINFORCE, advantages from a linear feature baseline fit on those episodes,
step size `algorithm.inner_lr`), sample fresh episodes with the adapted policy, and return the
gradient of their policy-gradient loss with respect to the meta-parameters, differentiated through
the inner step(s) (create_graph; `algorithm.first_order` cuts the graph as in first-order MAML).
As in the official implementation, the dependence of the pre-adaptation sampling distribution on
the meta-parameters is not differentiated (no DiCE / E-MAML term).

The outer step. By default the runtime averages the per-task meta-gradients and applies its optimizer
(Adam, `algorithm.meta_lr`): no trust region, so a too-large meta_lr can collapse the policy. With
`rl.max_kl` > 0 each chunk takes the paper's TRPO step on its tasks instead (meta_dist/algorithms/rl/
trpo.py) and returns the parameter change, for `algorithm.meta_optimizer: sgd`, `meta_lr: 1`. The
trust region scales every step to the change in the policy, the action noise included.

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
from meta_dist.algorithms.rl.trpo import ChunkObjective, trust_region_step
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

    def rollout(self, fast: Params, specs: Sequence[TaskSpec], key: object, episodes: int = 0) -> Trajectories:
        """`episodes` per task (0 = rl.num_episodes) with the stacked parameters `fast`."""
        stacked = {k: v.detach() for k, v in fast.items()}
        return rollout_gaussian(self.model, stacked, self.family, specs, episodes or self.config.rl.num_episodes, key)

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

    def sample(self, base: Params, specs: Sequence[TaskSpec], create_graph: bool):
        """Episodes before each inner step and after the last: (pre-adaptation episodes, adapted
        parameters, post-adaptation episodes)."""
        fast, pres = self.stack(base, len(specs)), []
        for i in range(self.cfg.inner_steps):
            pres.append(self.rollout(fast, specs, ("train", i)))
            fast = self.adapt(fast, pres[-1], self.cfg.inner_lr, create_graph)
        return pres, fast, self.rollout(fast, specs, ("train", self.cfg.inner_steps))

    def adapted(self, base: Params, pres: Sequence[Trajectories], create_graph: bool) -> Params:
        """The inner steps taken again from `base` on the fixed episodes `pres` (the trust-region step
        evaluates other parameters on them). First order: the adapted parameters move with `base`
        one for one (identity Jacobian)."""
        stacked = self.stack(base, pres[0].obs.shape[0])
        fast = stacked
        for traj in pres:
            fast = self.adapt(fast, traj, self.cfg.inner_lr, create_graph and not self.first_order)
        if self.first_order:
            fast = {k: stacked[k] + (fast[k] - stacked[k]).detach() for k in stacked}
        return fast

    def chunk_update(self, params: Params, specs: Sequence[TaskSpec]) -> ChunkOutput:
        if self.config.rl.max_kl > 0:
            return self.trust_region_update(params, specs)
        base = {k: v.detach().cpu().requires_grad_() for k, v in params.items()}  # rollouts run on CPU
        pres, fast, post = self.sample(base, specs, create_graph=not self.first_order)
        if self.first_order:
            fast = {k: v.detach().requires_grad_() for k, v in fast.items()}
        losses = self.task_losses(fast, post)
        wrt = fast if self.first_order else base
        names = list(base)
        grads = torch.autograd.grad(losses.sum(), [wrt[k] for k in names])
        out = {k: (g.sum(0) if self.first_order else g) for k, g in zip(names, grads)}
        metrics = {"meta_loss": float(losses.detach().sum()), **post.sums(),
                   "return_pre": float(pres[0].task_returns().sum())}
        return ChunkOutput(out, len(specs), metrics)

    def trust_region_update(self, params: Params, specs: Sequence[TaskSpec]) -> ChunkOutput:
        """The chunk's TRPO step (`rl.max_kl`), returned as its parameter change times its task count."""
        base = {k: v.detach().cpu() for k, v in params.items()}
        pres, fast, post = self.sample(base, specs, create_graph=False)
        objective = ChunkObjective(self, base, pres, {k: v.detach() for k, v in fast.items()}, post)
        theta, stats = trust_region_step(objective, self.config.rl.max_kl)
        T = len(specs)
        metrics = {"meta_loss": stats["surrogate"] * T, **post.sums(),
                   "return_pre": float(pres[0].task_returns().sum()),
                   "kl": stats["kl"] * T, "backtracks": stats["backtracks"] * T}
        return ChunkOutput(objective.unflatten((objective.theta0 - theta) * T), T, metrics)

    def eval_chunk(self, params: Params, specs: Sequence[TaskSpec], max_steps: int, inner_lr: float,
                   transductive_bn: bool = False) -> torch.Tensor:
        """Each task's metric (average return, or success rate) after 0..max_steps policy-gradient steps:
        [T, max_steps + 1]. Each step samples rl.eval_episodes; steps after the first are rl.eval_lr_decay
        times the first's size."""
        rl = self.config.rl
        lr = inner_lr or self.cfg.inner_lr
        fast = self.stack({k: v.detach().cpu() for k, v in params.items()}, len(specs))
        curve = []
        for s in range(max_steps + 1):
            traj = self.rollout(fast, specs, ("eval", s), rl.eval_episodes)
            curve.append(traj.task_metric(self.family.metric))
            if s < max_steps:
                step_lr = lr * (rl.eval_lr_decay if s else 1.0)
                fast = {k: v.detach() for k, v in self.adapt(fast, traj, step_lr, create_graph=False).items()}
        return torch.stack(curve, 1)
