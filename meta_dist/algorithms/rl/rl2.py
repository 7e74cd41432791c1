"""RL^2 (Duan et al. 2016, "RL^2: Fast Reinforcement Learning via Slow Reinforcement Learning").

A GRU policy sees (observation, previous action, previous reward, done flag) and keeps its hidden
state across the episodes of a trial, so "adaptation" happens in the hidden state and the
meta-parameters are trained by ordinary policy optimization over whole trials. The paper uses
TRPO with GAE; here each task contributes the gradient of a PPO-clip loss with GAE
(`rl.discount`, `rl.gae_lambda`), a value-head loss (`rl.value_coef`) and an entropy bonus
(`rl.entropy_coef`) on `rl.num_trials` trials sampled at the current parameters. Because the
behaviour policy IS the current policy, the PPO ratio is exactly 1 at this single epoch and the
clip never binds: the update is an advantage actor-critic (A2C) gradient, averaged over tasks by
the runtime and applied with Adam. The clipped form is kept so that the loss stays correct if the
samples ever come from a stale version (asynchronous mode).

Action and reward draws come from generators seeded by the spec, so chunks are reproducible.
Supported tasks: those with discrete actions whose observation already carries the RL^2 inputs
(bandits).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch.func import functional_call

from meta_dist.algorithms.base import ChunkOutput, MetaAlgorithm
from meta_dist.algorithms.rl.common import gae, uniform_noise
from meta_dist.errors import UserError
from meta_dist.tasks.spec import TaskSpec

Params = dict[str, torch.Tensor]


@dataclass
class Trials:
    """[T, R, L, ...]: tasks x trials x steps of a trial, with the behaviour policy's outputs."""
    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor

    def task_returns(self) -> torch.Tensor:
        """Total reward per trial, averaged over each task's trials: [T]."""
        return self.rewards.sum(-1).mean(-1)


class RL2(MetaAlgorithm):
    def __init__(self, config, family, device="cpu", model=None):
        if not getattr(family, "discrete", False):
            raise UserError(f"rl2 is implemented for discrete-action tasks (bandits); task '{family.name}' is "
                            f"continuous: use algorithm.name=maml_rl")
        super().__init__(config, family, device, model)

    def policy(self, params: Params, obs: torch.Tensor, h: torch.Tensor | None = None):
        return functional_call(self.model, params, (obs, h))

    @torch.no_grad()
    def rollout(self, params: Params, specs: Sequence[TaskSpec], num_trials: int, key: object) -> Trials:
        T, R, L, k = len(specs), num_trials, self.family.horizon, self.family.action_dim
        env = self.family.vec_env(specs, R, key)
        draws = uniform_noise(specs, key, (L, R))  # inverse-CDF sampling of the categorical actions
        obs, h = env.reset(), None
        record: dict[str, list] = {"obs": [], "actions": [], "rewards": [], "log_probs": [], "values": []}
        for t in range(L):
            logits, values, h = self.policy(params, obs.reshape(T * R, 1, -1), h)
            log_p = F.log_softmax(logits[:, 0], -1).view(T, R, k)
            cdf = log_p.exp().cumsum(-1)
            actions = (draws[:, t].unsqueeze(-1) > cdf).sum(-1).clamp(max=k - 1)
            next_obs, rewards, _ = env.step(actions)
            for name, value in (("obs", obs), ("actions", actions), ("rewards", rewards), ("values", values.view(T, R)),
                                ("log_probs", log_p.gather(-1, actions.unsqueeze(-1)).squeeze(-1))):
                record[name].append(value)
            obs = next_obs
        return Trials(**{name: torch.stack(v, 2) for name, v in record.items()})

    def task_losses(self, params: Params, trials: Trials) -> tuple[torch.Tensor, torch.Tensor]:
        """(PPO-clip + value + entropy loss, policy-only loss), each [T], differentiable in `params`."""
        rl = self.config.rl
        T, R, L, D = trials.obs.shape
        logits, values, _ = self.policy(params, trials.obs.reshape(T * R, L, D))
        log_p_all = F.log_softmax(logits, -1).view(T, R, L, -1)
        log_p = log_p_all.gather(-1, trials.actions.unsqueeze(-1)).squeeze(-1)
        ones = torch.ones_like(trials.rewards)
        adv = gae(trials.rewards, trials.values, ones, rl.discount, rl.gae_lambda)
        targets = adv + trials.values
        ratio = torch.exp(log_p - trials.log_probs)
        surrogate = torch.min(ratio * adv, ratio.clamp(1 - rl.clip, 1 + rl.clip) * adv)
        policy_loss = -surrogate.mean((1, 2))
        value_loss = ((values.view(T, R, L) - targets) ** 2).mean((1, 2))
        entropy = -(log_p_all.exp() * log_p_all).sum(-1).mean((1, 2))
        return policy_loss + rl.value_coef * value_loss - rl.entropy_coef * entropy, policy_loss

    def chunk_update(self, params: Params, specs: Sequence[TaskSpec]) -> ChunkOutput:
        params = {k: v.detach().cpu().requires_grad_() for k, v in params.items()}
        trials = self.rollout(params, specs, self.config.rl.num_trials, ("train",))
        losses, policy_losses = self.task_losses(params, trials)
        names = list(params)
        grads = torch.autograd.grad(losses.sum(), [params[k] for k in names])
        metrics = {"meta_loss": float(losses.detach().sum()), "return": float(trials.task_returns().sum()),
                   "policy_loss": float(policy_losses.detach().sum())}
        return ChunkOutput(dict(zip(names, grads)), len(specs), metrics)

    def eval_chunk(self, params: Params, specs: Sequence[TaskSpec], max_steps: int, inner_lr: float,
                   transductive_bn: bool = False) -> torch.Tensor:
        """Total reward of one trial per task (adaptation happens inside the trial): [T, 1]."""
        params = {k: v.detach().cpu() for k, v in params.items()}
        return self.rollout(params, specs, 1, ("eval",)).task_returns().unsqueeze(1)
