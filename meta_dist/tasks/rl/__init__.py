"""Meta-RL task families: each task is an environment (a goal, a bandit, a target velocity).

A family hands out `TaskSpec`s like every other family (parameters plus an env seed, derived from
(seed, split, step, index) only) and turns them into environments two ways: `make_env(spec)`, a
plain `gymnasium.Env` for users and tests, and `vec_env(specs, num_episodes, key)`, a batch of
`num_tasks x num_episodes` environments stepped together on torch tensors for the rollouts of the
algorithms. Navigation and bandits are pure tensor code (one step of 100 environments costs
microseconds); half-cheetah and Meta-World wrap lists of MuJoCo environments. The key trade-off: every source
of randomness in a rollout is a generator seeded by (spec.seed, key), so a chunk re-run on another
worker samples exactly the same episodes.
"""
from __future__ import annotations

from abc import abstractmethod
from typing import Sequence

import gymnasium as gym
import torch

from meta_dist.config import Config
from meta_dist.tasks.spec import TaskFamily, TaskSpec, derive_seed


class VecEnv:
    """`num_tasks x num_episodes` environments stepped together; tensors are [T, E, ...]."""

    num_tasks: int
    num_episodes: int

    @abstractmethod
    def reset(self) -> torch.Tensor:
        """First observations, [T, E, obs_dim]."""

    @abstractmethod
    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(next observations, rewards [T, E], terminated [T, E] bool) for a batch of actions."""


class RLTaskFamily(TaskFamily):
    """Common shape of the RL families: observation size, action space, horizon."""

    metric = "return"
    discrete: bool = False
    obs_dim: int
    action_dim: int
    """Continuous: action dimensions; discrete: number of actions."""
    horizon: int
    """Steps per episode: `rl.horizon` unless a family defines its own (bandits: `rl.num_pulls`)."""

    def __init__(self, config: Config):
        self.config = config
        self.rl = config.rl
        self.horizon = config.rl.horizon

    @abstractmethod
    def spec(self, seed: int, split: str, step: int, index: int, **ignored) -> TaskSpec:
        """The index-th task of a step; episodic shape overrides (ways/shots) are ignored."""

    @abstractmethod
    def make_env(self, spec: TaskSpec) -> gym.Env:
        """One gymnasium environment for the task."""

    @abstractmethod
    def vec_env(self, specs: Sequence[TaskSpec], num_episodes: int, key: object) -> VecEnv:
        """`num_episodes` environments per task; `key` names the rollout (its randomness)."""

    def env_seed(self, spec: TaskSpec, *key: object) -> int:
        return derive_seed("env", spec.seed, *key)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.obs_dim,)

    @property
    def output_dim(self) -> int:
        return self.action_dim


def build_rl_family(config: Config) -> RLTaskFamily:
    name = config.task.name
    if name == "navigation2d":
        from meta_dist.tasks.rl.navigation import Navigation2D
        return Navigation2D(config)
    if name == "bandits":
        from meta_dist.tasks.rl.bandits import BernoulliBandits
        return BernoulliBandits(config)
    if name in ("cheetah_vel", "cheetah_dir"):
        from meta_dist.tasks.rl.cheetah import HalfCheetahTasks
        return HalfCheetahTasks(config, direction=name == "cheetah_dir")
    if name.startswith("metaworld_"):
        from meta_dist.tasks.rl.metaworld import MetaWorldTasks
        return MetaWorldTasks(config)
    raise AssertionError(f"not an RL task: {name}")


__all__ = ["RLTaskFamily", "VecEnv", "build_rl_family"]
