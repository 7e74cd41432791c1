"""Task specs: small, picklable descriptions of a task, derived from (seed, split, step, index).

A spec never holds tensors. The driver derives the specs of a step from the run seed alone, so
the same step produces the same tasks on any worker, in any process, before or after a failure;
workers turn specs into tensors (`TaskFamily.materialize`) next to their local data.
"""
from __future__ import annotations

import hashlib
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch


@dataclass(frozen=True)
class TaskSpec:
    family: str
    split: str
    step: int
    index: int
    seed: int
    """Seed for any randomness left to materialization (input points, env resets)."""
    params: tuple[float, ...] = ()
    """Continuous task parameters (sinusoid amplitude and phase, a goal, arm probabilities)."""
    classes: tuple[int, ...] = ()
    """Episodic tasks: class ids, one per way."""
    rows: tuple[int, ...] = ()
    """Episodic tasks: store row indices, class-major, shots then queries per class."""
    rotations: tuple[int, ...] = ()
    """Episodic tasks: per-way rotation in quarter turns."""


@dataclass
class TaskBatch:
    """Tensors of a chunk of supervised tasks, stacked on a leading task dimension."""
    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor

    @property
    def num_tasks(self) -> int:
        return self.support_x.shape[0]

    def to(self, device) -> "TaskBatch":
        return TaskBatch(*(t.to(device) for t in (self.support_x, self.support_y, self.query_x, self.query_y)))


def derive_seed(*keys: object) -> int:
    """A 63-bit seed from any keys, stable across processes and Python versions (unlike hash())."""
    digest = hashlib.blake2b(repr(keys).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def uniform_streams(seeds: Sequence[int], count: int) -> np.ndarray:
    """`count` uniforms in [0, 1) per seed, [len(seeds), count] float64, from splitmix64 on
    (seed, position): a counter-based generator, so each row depends on its seed alone and a
    whole chunk is drawn in a few vectorized operations."""
    with np.errstate(over="ignore"):
        z = np.asarray(seeds, dtype=np.uint64)[:, None] + np.arange(1, count + 1, dtype=np.uint64) \
            * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


RL_METRICS = ("return", "success")
"""Metrics of meta-RL families: the average return of an episode, or the percentage of episodes that succeed."""


def spec_rng(seed: int, split: str, step: int, index: int) -> random.Random:
    return random.Random(derive_seed("task", seed, split, step, index))


class TaskFamily(ABC):
    """A distribution over tasks: specs on the driver, tensors (or environments) on workers."""

    name: str
    metric: str  # "mse" | "accuracy" | "return" | "success"
    alphabet_episodes: bool = False
    """It can draw all of an episode's classes from one alphabet (task / eval.within_alphabet)."""
    variable_shapes: bool = False
    """Its episodes differ in ways and shots from one to the next (evaluation scores them one at a time)."""

    @abstractmethod
    def spec(self, seed: int, split: str, step: int, index: int, *, ways: int | None = None,
             shots: int | None = None, num_query: int | None = None) -> TaskSpec:
        """The index-th task of a step; ways/shots/num_query override the config (evaluation)."""

    def specs(self, seed: int, split: str, step: int, count: int, **shape) -> list[TaskSpec]:
        return [self.spec(seed, split, step, i, **shape) for i in range(count)]

    def materialize(self, specs: Sequence[TaskSpec], device: torch.device | str = "cpu") -> TaskBatch:
        """Stack the tensors of a chunk of specs (supervised families)."""
        raise NotImplementedError(f"task family '{self.name}' has no tensor batches")

    @property
    def input_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def output_dim(self) -> int:
        raise NotImplementedError
