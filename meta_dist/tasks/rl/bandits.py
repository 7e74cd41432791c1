"""Bernoulli multi-armed bandits, the RL^2 benchmark (Duan et al. 2016, Sec. 4.1).

A task is k arms with success probabilities p_i ~ U[0, 1]; a trial is n pulls (`rl.num_pulls`),
each a one-step episode of the same bandit. As in RL^2, the observation carries what a recurrent
policy needs to learn across pulls: a one-hot of the previous action, the previous reward and the
"episode done" flag (all zero before the first pull). Rewards are drawn as u < p[a] with u uniform
in float32, from the environment's seeded generator, so the gymnasium and the tensor versions agree
draw for draw when given the same uniforms.
"""
from __future__ import annotations

from typing import Sequence

import gymnasium as gym
import numpy as np
import torch

from meta_dist.tasks.rl import RLTaskFamily, VecEnv
from meta_dist.tasks.spec import TaskSpec, derive_seed, spec_rng


def observation(num_arms: int, actions, rewards, first: bool):
    """[one-hot previous action, previous reward, done flag]; works for numpy scalars and tensors."""
    if isinstance(actions, torch.Tensor):
        obs = torch.zeros(*actions.shape, num_arms + 2)
        if not first:
            obs.scatter_(-1, actions.unsqueeze(-1), 1.0)
            obs[..., num_arms] = rewards
            obs[..., num_arms + 1] = 1.0
        return obs
    obs = np.zeros(num_arms + 2, np.float32)
    if not first:
        obs[int(actions)] = 1.0
        obs[num_arms], obs[num_arms + 1] = rewards, 1.0
    return obs


class BernoulliBanditEnv(gym.Env):
    """One trial of `num_pulls` pulls; `terminated` after the last pull."""

    metadata = {"render_modes": []}

    def __init__(self, probs: Sequence[float], num_pulls: int = 10):
        self.probs = np.asarray(probs, dtype=np.float32)
        self.num_arms, self.num_pulls = len(self.probs), num_pulls
        self.observation_space = gym.spaces.Box(0.0, 1.0, (self.num_arms + 2,), np.float32)
        self.action_space = gym.spaces.Discrete(self.num_arms)
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t = 0
        return observation(self.num_arms, 0, 0.0, first=True), {}

    def step(self, action):
        u = np.float32(self.np_random.random())
        reward = float(u < self.probs[int(action)])
        self.t += 1
        return (observation(self.num_arms, action, reward, first=False), reward, self.t >= self.num_pulls,
                False, {})


class VecBernoulliBandits(VecEnv):
    """[T, E] trials; `uniforms` [T, E, n] are the reward draws (from the tasks' seeded generators)."""

    def __init__(self, probs: torch.Tensor, uniforms: torch.Tensor):
        self.probs = probs.to(torch.float32)
        self.uniforms = uniforms
        self.num_tasks, self.num_episodes, self.num_pulls = uniforms.shape
        self.num_arms = probs.shape[1]
        self.t = 0

    def reset(self) -> torch.Tensor:
        self.t = 0
        zeros = torch.zeros(self.num_tasks, self.num_episodes, dtype=torch.long)
        return observation(self.num_arms, zeros, zeros.float(), first=True)

    def step(self, actions: torch.Tensor):
        p = self.probs.unsqueeze(1).expand(-1, self.num_episodes, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        reward = (self.uniforms[:, :, self.t] < p).float()
        self.t += 1
        terminated = torch.full_like(reward, self.t >= self.num_pulls, dtype=torch.bool)
        return observation(self.num_arms, actions, reward, first=False), reward, terminated


class BernoulliBandits(RLTaskFamily):
    name = "bandits"
    discrete = True

    def __init__(self, config):
        super().__init__(config)
        self.num_arms, self.num_pulls = self.rl.num_arms, self.rl.num_pulls
        self.obs_dim, self.action_dim, self.horizon = self.num_arms + 2, self.num_arms, self.num_pulls

    def spec(self, seed, split, step, index, **ignored) -> TaskSpec:
        rng = spec_rng(seed, split, step, index)
        probs = tuple(rng.random() for _ in range(self.num_arms))
        return TaskSpec(self.name, split, step, index, derive_seed("env", seed, split, step, index), params=probs)

    def make_env(self, spec: TaskSpec) -> BernoulliBanditEnv:
        return BernoulliBanditEnv(spec.params, self.num_pulls)

    def uniforms(self, specs: Sequence[TaskSpec], num_episodes: int, key: object) -> torch.Tensor:
        """Reward draws [T, E, n], one generator per task: a task's draws never depend on its chunk."""
        out = []
        for s in specs:
            gen = torch.Generator().manual_seed(self.env_seed(s, key))
            out.append(torch.rand(num_episodes, self.num_pulls, generator=gen))
        return torch.stack(out)

    def vec_env(self, specs, num_episodes, key=None) -> VecBernoulliBandits:
        probs = torch.tensor([s.params for s in specs], dtype=torch.float32)
        return VecBernoulliBandits(probs, self.uniforms(specs, num_episodes, key))
