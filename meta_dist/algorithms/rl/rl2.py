"""RL^2 (Duan et al. 2016, "RL^2: Fast Reinforcement Learning via Slow Reinforcement Learning").

A GRU policy sees (observation, previous action, previous reward, first-step flag) and keeps its
hidden state across the episodes of a trial, so "adaptation" happens in the hidden state and the
meta-parameters are trained by ordinary policy optimization over whole trials. The paper uses
TRPO with GAE; here each task contributes the gradient of a PPO-clip loss with GAE over the trial
(`rl.discount`, `rl.gae_lambda`; the trial is one long episode, as in the paper), a value-head
loss (`rl.value_coef`) and an entropy bonus (`rl.entropy_coef`, constant or annealed to 0 over the run:
`rl.entropy_schedule`) on `rl.num_trials` trials sampled at the current parameters. Because the
behaviour policy IS the current policy, the PPO ratio is exactly 1 at this single epoch and the clip
never binds: the update is an advantage actor-critic (A2C) gradient, averaged over tasks by the
runtime and applied with Adam. With `rl.ppo_epochs` > 1 a chunk is PPO's batch instead: the worker takes
that many Adam steps (`algorithm.inner_lr`) on its trials, where the clip does bind, and returns the
parameter change, which the runtime averages as it averages Reptile's deltas (`algorithm.meta_optimizer:
sgd`, `meta_lr: 1` applies the mean change as it is). Chunks are fixed by the config, not by the worker
count, so results stay independent of the workers; keeping samples between meta-steps instead would
break the stateless chunk contract (re-run anywhere after a fault, bit for bit). The clipped form also
keeps the loss correct if the samples ever come from a stale version (asynchronous mode).

Discrete-action tasks (bandits) build the RL^2 inputs into their observations and a trial is one
run of `horizon` steps. On continuous-action tasks (navigation2d, half-cheetah, Meta-World) a trial
is `rl.num_episodes` episodes of `horizon` steps each, the inputs are assembled here (the reward
divided by `rl.reward_scale`) and the policy is a Gaussian GRU; every episode runs its full horizon
(a family's early termination is not used). Action draws come from generators seeded by the spec, so
chunks are reproducible.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch.func import functional_call

from meta_dist.algorithms.base import ChunkOutput, MetaAlgorithm
from meta_dist.algorithms.rl.common import gae, gaussian_log_prob, gaussian_noise, normalize, uniform_noise
from meta_dist.config import linear_anneal
from meta_dist.tasks.spec import TaskSpec

Params = dict[str, torch.Tensor]


@dataclass
class Trials:
    """[T, R, L, ...]: tasks x trials x steps of a trial (its episodes one after another), with the
    policy's inputs and the behaviour policy's outputs."""
    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    success: torch.Tensor | None = None
    """[T, R, E] bool: episode e of the trial succeeded at some step (families whose metric is "success")."""

    def task_returns(self) -> torch.Tensor:
        """Total reward per trial, averaged over each task's trials: [T]."""
        return self.rewards.sum(-1).mean(-1)

    def episode_metric(self, metric: str, episodes: int) -> torch.Tensor:
        """Each task's metric per episode of the trial, averaged over its trials: [T, E]."""
        if metric == "success":
            return self.success.float().mean(1)
        T, R, L = self.rewards.shape
        return self.rewards.view(T, R, episodes, L // episodes).sum(-1).mean(1)


class RL2(MetaAlgorithm):
    curve_axis = "episodes"

    @property
    def discrete(self) -> bool:
        return getattr(self.family, "discrete", False)

    @property
    def episodes_per_trial(self) -> int:
        return 1 if self.discrete else self.config.rl.num_episodes

    @property
    def env_steps_per_task(self) -> int:
        """Environment steps of one task's meta-training trials."""
        return self.config.rl.num_trials * self.episodes_per_trial * self.family.horizon

    def build_model(self, seed: int | None = None):
        if self.discrete:  # the observations already carry the RL^2 inputs
            return super().build_model(seed)
        f = self.family
        return self.model_factory((f.obs_dim + f.action_dim + 2,), f.action_dim, seed)

    def policy(self, params: Params, obs: torch.Tensor, h: torch.Tensor | None = None):
        return functional_call(self.model, params, (obs, h))

    def inputs(self, obs: torch.Tensor, prev: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        """The policy's input [T, R, D] at a step: the observation, then (continuous tasks) the previous
        action, the previous reward / rl.reward_scale and a flag on an episode's first step."""
        if self.discrete:
            return obs
        T, R, _ = obs.shape
        if prev is None:
            action, reward, first = obs.new_zeros(T, R, self.family.action_dim), obs.new_zeros(T, R, 1), 1.0
        else:
            action, reward, first = prev[0], prev[1].unsqueeze(-1) / self.config.rl.reward_scale, 0.0
        return torch.cat([obs, action, reward, torch.full_like(reward, first)], -1)

    def act(self, dist, values: torch.Tensor, draws: torch.Tensor):
        """(action, its log-probability, value) per [T, R] from the policy's one-step outputs."""
        T, R = draws.shape[:2]
        if self.discrete:  # inverse-CDF sampling of the categorical actions
            log_p = F.log_softmax(dist[:, 0], -1).view(T, R, -1)
            actions = (draws.unsqueeze(-1) > log_p.exp().cumsum(-1)).sum(-1).clamp(max=log_p.shape[-1] - 1)
            return actions, log_p.gather(-1, actions.unsqueeze(-1)).squeeze(-1), values.view(T, R)
        mean, log_std = dist[0][:, 0].view(T, R, -1), dist[1]
        actions = mean + torch.exp(log_std) * draws
        return actions, gaussian_log_prob(actions, mean, log_std), values.view(T, R)

    @torch.no_grad()
    def rollout(self, params: Params, specs: Sequence[TaskSpec], num_trials: int, key: object) -> Trials:
        T, R, E, H = len(specs), num_trials, self.episodes_per_trial, self.family.horizon
        draws = (uniform_noise(specs, key, (H, R)) if self.discrete
                 else gaussian_noise(specs, key, (E * H, R, self.family.action_dim)))
        record: dict[str, list] = {"obs": [], "actions": [], "rewards": [], "log_probs": [], "values": []}
        h, success = None, []
        for e in range(E):
            env = self.family.vec_env(specs, R, key if self.discrete else (*key, e))
            obs, prev = env.reset(), None
            for t in range(H):
                inputs = self.inputs(obs, prev)
                dist, values, h = self.policy(params, inputs.reshape(T * R, 1, -1), h)
                actions, log_p, values = self.act(dist, values, draws[:, e * H + t])
                obs, rewards, _ = env.step(actions)
                prev = (actions, rewards)
                for name, value in zip(record, (inputs, actions, rewards, log_p, values)):
                    record[name].append(value)
            if getattr(env, "success", None) is not None:
                success.append(env.success.clone())
        return Trials(**{name: torch.stack(v, 2) for name, v in record.items()},
                      success=torch.stack(success, -1) if success else None)

    def log_prob_entropy(self, dist, actions: torch.Tensor, shape: tuple[int, ...]):
        """Log-probabilities of the taken actions and the policy's entropy per step, each [T, R, L]."""
        if self.discrete:
            log_p_all = F.log_softmax(dist, -1).view(*shape, -1)
            log_p = log_p_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
            return log_p, -(log_p_all.exp() * log_p_all).sum(-1)
        mean, log_std = dist[0].view(*shape, -1), dist[1]
        entropy = (log_std + 0.5 * math.log(2 * math.pi * math.e)).sum().expand(shape)
        return gaussian_log_prob(actions, mean, log_std), entropy

    def entropy_coef(self, step: int) -> float:
        """The entropy bonus's weight at (1-based) meta-step `step`."""
        rl = self.config.rl
        return linear_anneal(rl.entropy_coef, step, self.config.steps) if rl.entropy_schedule == "linear" \
            else rl.entropy_coef

    def task_losses(self, params: Params, trials: Trials, entropy_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(PPO-clip + value + entropy loss, policy-only loss), each [T], differentiable in `params`."""
        rl = self.config.rl
        T, R, L, D = trials.obs.shape
        dist, values, _ = self.policy(params, trials.obs.reshape(T * R, L, D))
        log_p, entropy = self.log_prob_entropy(dist, trials.actions, (T, R, L))
        ones = torch.ones_like(trials.rewards)
        adv = gae(trials.rewards / rl.reward_scale, trials.values, ones, rl.discount, rl.gae_lambda)
        targets = adv + trials.values
        if rl.normalize_advantage:
            adv = normalize(adv, ones, dims=(1, 2))
        ratio = torch.exp(log_p - trials.log_probs)
        surrogate = torch.min(ratio * adv, ratio.clamp(1 - rl.clip, 1 + rl.clip) * adv)
        policy_loss = -surrogate.mean((1, 2))
        value_loss = ((values.view(T, R, L) - targets) ** 2).mean((1, 2))
        return policy_loss + rl.value_coef * value_loss - entropy_coef * entropy.mean((1, 2)), policy_loss

    def chunk_update(self, params: Params, specs: Sequence[TaskSpec]) -> ChunkOutput:
        params = {k: v.detach().cpu().requires_grad_() for k, v in params.items()}
        trials = self.rollout(params, specs, self.config.rl.num_trials, ("train",))
        coef = self.entropy_coef(specs[0].step)
        if self.config.rl.ppo_epochs > 1:
            update, losses, policy_losses = self.local_ppo(params, trials, coef)
        else:
            losses, policy_losses = self.task_losses(params, trials, coef)
            names = list(params)
            update = dict(zip(names, torch.autograd.grad(losses.sum(), [params[k] for k in names])))
        metrics = {"meta_loss": float(losses.detach().sum()), "return": float(trials.task_returns().sum()),
                   "policy_loss": float(policy_losses.detach().sum())}
        if trials.success is not None:
            metrics["success"] = float(trials.success.float().mean((1, 2)).sum())
        return ChunkOutput(update, len(specs), metrics)

    def local_ppo(self, params: Params, trials: Trials, entropy_coef: float):
        """PPO's epochs on the chunk's trials: `rl.ppo_epochs` Adam steps (`algorithm.inner_lr`, moments
        started afresh) on the mean loss of its tasks. Returns (the parameter change x the chunk's tasks, as
        Reptile's deltas, for the runtime's mean; the first epoch's losses)."""
        local = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
        optimizer = torch.optim.Adam(local.values(), lr=self.cfg.inner_lr)
        first = None
        for _ in range(self.config.rl.ppo_epochs):
            losses, policy_losses = self.task_losses(local, trials, entropy_coef)
            if first is None:
                first = (losses.detach(), policy_losses.detach())
            optimizer.zero_grad()
            losses.mean().backward()
            optimizer.step()
        T = trials.obs.shape[0]
        return {k: (params[k].detach() - local[k].detach()) * T for k in params}, *first

    def eval_chunk(self, params: Params, specs: Sequence[TaskSpec], max_steps: int, inner_lr: float,
                   transductive_bn: bool = False) -> torch.Tensor:
        """Each task's metric per episode of one trial (adaptation happens inside the trial): [T, E]."""
        params = {k: v.detach().cpu() for k, v in params.items()}
        trials = self.rollout(params, specs, 1, ("eval",))
        return trials.episode_metric(self.family.metric, self.episodes_per_trial)
