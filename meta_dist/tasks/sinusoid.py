"""Sinusoid regression tasks (Finn et al. 2017, Sec. 5.1): y = A sin(x + phi).

A ~ U[amplitude_min, amplitude_max], phi ~ U[0, phase_max], x ~ U[x_min, x_max]. The spec carries
(A, phi) and a seed; inputs are drawn at materialization from a generator seeded by the spec, so a
chunk re-run anywhere yields the same points.
"""
from __future__ import annotations

from typing import Sequence

import torch

from meta_dist.config import TaskConfig
from meta_dist.tasks.spec import TaskBatch, TaskFamily, TaskSpec, derive_seed, spec_rng, uniform_streams


class SinusoidTasks(TaskFamily):
    name = "sinusoid"
    metric = "mse"

    def __init__(self, cfg: TaskConfig):
        self.cfg = cfg

    def spec(self, seed, split, step, index, *, ways=None, shots=None, num_query=None) -> TaskSpec:
        rng = spec_rng(seed, split, step, index)
        amplitude = rng.uniform(self.cfg.amplitude_min, self.cfg.amplitude_max)
        phase = rng.uniform(0.0, self.cfg.phase_max)
        k = shots if shots is not None else self.cfg.shots
        q = num_query if num_query is not None else self.cfg.num_query
        return TaskSpec(self.name, split, step, index, derive_seed("points", seed, split, step, index),
                        params=(amplitude, phase, float(k), float(q)))

    def materialize(self, specs: Sequence[TaskSpec], device="cpu") -> TaskBatch:
        # Points come from a counter-based generator seeded by each spec alone (chunking does not
        # matter), drawn for the whole chunk at once.
        k, q = int(specs[0].params[2]), int(specs[0].params[3])
        u = uniform_streams([spec.seed for spec in specs], k + q)
        x = torch.from_numpy(u).float().view(len(specs), k + q, 1)
        x = x * (self.cfg.x_max - self.cfg.x_min) + self.cfg.x_min
        amplitude = torch.tensor([s.params[0] for s in specs], dtype=torch.float32).view(-1, 1, 1)
        phase = torch.tensor([s.params[1] for s in specs], dtype=torch.float32).view(-1, 1, 1)
        y = amplitude * torch.sin(x + phase)
        return TaskBatch(x[:, :k], y[:, :k], x[:, k:], y[:, k:]).to(device)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1,)

    @property
    def output_dim(self) -> int:
        return 1
