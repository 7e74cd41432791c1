"""Half-cheetah goal velocity and goal direction (Finn et al. 2017, Sec. 5.3), on gymnasium's
HalfCheetah-v5 (MuJoCo).

Goal velocity: v_goal ~ U[0, 2], reward = -|v - v_goal| - ctrl cost. Goal direction: d in {-1, +1}
with equal probability, reward = d * v - ctrl cost. v is the forward velocity reported by the
environment; the control cost is 0.05 * |a|^2, the weight of the official rllab environments
(0.5 * 1e-1). Horizon `rl.horizon` (200 in the paper). There is no tensor version of the physics:
`VecHalfCheetah` steps a pool of environments, reused across rollouts (building a MuJoCo model is
the slow part) and reset with seeds derived from the spec, so rollouts stay reproducible.
"""
from __future__ import annotations

from typing import Sequence

import gymnasium as gym
import numpy as np
import torch

from meta_dist.tasks.rl import RLTaskFamily, VecEnv
from meta_dist.tasks.spec import TaskSpec, derive_seed, spec_rng

CTRL_COST_WEIGHT = 0.05
VELOCITY_RANGE = (0.0, 2.0)


class HalfCheetahGoalEnv(gym.Wrapper):
    """HalfCheetah-v5 with the reward replaced by the goal-velocity or goal-direction reward."""

    def __init__(self, goal: float, direction: bool, horizon: int = 200):
        super().__init__(gym.make("HalfCheetah-v5", ctrl_cost_weight=CTRL_COST_WEIGHT, max_episode_steps=horizon))
        self.goal, self.direction = float(goal), direction

    def step(self, action):
        obs, _, terminated, truncated, info = self.env.step(action)
        v = info["x_velocity"]
        task_reward = self.goal * v if self.direction else -abs(v - self.goal)
        return obs, float(task_reward + info["reward_ctrl"]), terminated, truncated, info


class VecHalfCheetah(VecEnv):
    def __init__(self, envs: list[HalfCheetahGoalEnv], seeds: list[int], num_tasks: int, num_episodes: int):
        self.envs, self.seeds = envs, seeds
        self.num_tasks, self.num_episodes = num_tasks, num_episodes

    def _stack(self, arrays) -> torch.Tensor:
        return torch.from_numpy(np.stack(arrays).astype(np.float32)).view(self.num_tasks, self.num_episodes, -1)

    def reset(self) -> torch.Tensor:
        return self._stack([env.reset(seed=s)[0] for env, s in zip(self.envs, self.seeds)])

    def step(self, actions: torch.Tensor):
        flat = actions.clamp(-1.0, 1.0).reshape(len(self.envs), -1).numpy()
        out = [env.step(a) for env, a in zip(self.envs, flat)]
        obs = self._stack([o[0] for o in out])
        reward = torch.tensor([o[1] for o in out], dtype=torch.float32).view(self.num_tasks, self.num_episodes)
        terminated = torch.tensor([o[2] for o in out]).view(self.num_tasks, self.num_episodes)
        return obs, reward, terminated


class HalfCheetahTasks(RLTaskFamily):
    obs_dim = 17
    action_dim = 6

    def __init__(self, config, direction: bool):
        super().__init__(config)
        self.direction = direction
        self.name = "cheetah_dir" if direction else "cheetah_vel"
        self._pool: list[HalfCheetahGoalEnv] = []

    def spec(self, seed, split, step, index, **ignored) -> TaskSpec:
        rng = spec_rng(seed, split, step, index)
        goal = rng.choice((-1.0, 1.0)) if self.direction else rng.uniform(*VELOCITY_RANGE)
        return TaskSpec(self.name, split, step, index, derive_seed("env", seed, split, step, index), params=(goal,))

    def make_env(self, spec: TaskSpec) -> HalfCheetahGoalEnv:
        return HalfCheetahGoalEnv(spec.params[0], self.direction, self.horizon)

    def vec_env(self, specs: Sequence[TaskSpec], num_episodes: int, key=None) -> VecHalfCheetah:
        n = len(specs) * num_episodes
        while len(self._pool) < n:
            self._pool.append(HalfCheetahGoalEnv(0.0, self.direction, self.horizon))
        envs = self._pool[:n]
        seeds = []
        for i, spec in enumerate(specs):
            for e in range(num_episodes):
                envs[i * num_episodes + e].goal = float(spec.params[0])
                seeds.append(self.env_seed(spec, key, e) % 2**32)
        return VecHalfCheetah(envs, seeds, len(specs), num_episodes)
