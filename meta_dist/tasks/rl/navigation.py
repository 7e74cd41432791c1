"""2D point navigation (Finn et al. 2017, Sec. 5.3; the official rllab code's PointEnvRandGoal).

The agent starts at the origin; obs = position; the action, clipped to [-1, 1] per axis, is the velocity
in units of the top speed 0.1 (the official code wraps the environment in rllab's `normalize`, which
maps the policy's [-1, 1] onto the [-0.1, 0.1] action box, so a policy's initial noise, standard
deviation 1, is one top speed, not ten); reward = -(L2 distance to the goal) after the move, goal ~
U[-0.5, 0.5]^2, horizon `rl.horizon` (100). An episode terminates early once both coordinates are
within 0.01 of the goal, as in the official code. `Navigation2DEnv` is the gymnasium form;
`VecNavigation2D` steps all episodes of a chunk of tasks as one tensor op, with the same float32
arithmetic.
"""
from __future__ import annotations

from typing import Sequence

import gymnasium as gym
import numpy as np
import torch

from meta_dist.tasks.rl import RLTaskFamily, VecEnv
from meta_dist.tasks.spec import TaskSpec, derive_seed, spec_rng

MAX_SPEED = 0.1
GOAL_RANGE = 0.5
SUCCESS_RADIUS = 0.01


class Navigation2DEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, goal: Sequence[float], horizon: int = 100):
        self.goal = np.asarray(goal, dtype=np.float32)
        self.horizon = horizon
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.state = np.zeros(2, np.float32)
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.state = np.zeros(2, np.float32)
        self.t = 0
        return self.state.copy(), {}

    def step(self, action):
        velocity = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0) * np.float32(MAX_SPEED)
        self.state = (self.state + velocity).astype(np.float32)
        d = self.state - self.goal
        reward = -np.sqrt(d[0] * d[0] + d[1] * d[1], dtype=np.float32)
        terminated = bool(abs(d[0]) < SUCCESS_RADIUS and abs(d[1]) < SUCCESS_RADIUS)
        self.t += 1
        return self.state.copy(), float(reward), terminated, self.t >= self.horizon, {"goal": self.goal.copy()}


class VecNavigation2D(VecEnv):
    def __init__(self, goals: torch.Tensor, num_episodes: int):
        self.goals = goals.to(torch.float32).unsqueeze(1)  # [T, 1, 2]
        self.num_tasks, self.num_episodes = goals.shape[0], num_episodes
        self.state = torch.zeros(self.num_tasks, num_episodes, 2)

    def reset(self) -> torch.Tensor:
        self.state = torch.zeros(self.num_tasks, self.num_episodes, 2)
        return self.state.clone()

    def step(self, actions: torch.Tensor):
        self.state = self.state + actions.clamp(-1.0, 1.0) * MAX_SPEED
        d = self.state - self.goals
        # The square root in float64, rounded once to float32: correctly rounded, as numpy's, on every
        # CPU (torch's float32 sqrt under AVX-512 is 1 ulp off for ~18% of inputs, measured).
        reward = -torch.sqrt((d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1]).double()).float()
        terminated = (d.abs() < SUCCESS_RADIUS).all(-1)
        return self.state.clone(), reward, terminated


class Navigation2D(RLTaskFamily):
    name = "navigation2d"
    obs_dim = 2
    action_dim = 2

    def spec(self, seed, split, step, index, **ignored) -> TaskSpec:
        rng = spec_rng(seed, split, step, index)
        goal = (rng.uniform(-GOAL_RANGE, GOAL_RANGE), rng.uniform(-GOAL_RANGE, GOAL_RANGE))
        return TaskSpec(self.name, split, step, index, derive_seed("env", seed, split, step, index), params=goal)

    def make_env(self, spec: TaskSpec) -> Navigation2DEnv:
        return Navigation2DEnv(spec.params, self.horizon)

    def vec_env(self, specs, num_episodes, key=None) -> VecNavigation2D:
        return VecNavigation2D(torch.tensor([s.params for s in specs], dtype=torch.float32), num_episodes)
