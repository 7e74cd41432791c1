"""The contract every meta-learning algorithm implements (pure torch + torch.func, never ray).

An algorithm turns (meta-parameters, a chunk of task specs) into ONE update summed over the chunk's
tasks: a meta-gradient, or for Reptile the pseudo-gradient theta - phi. The runtime averages the
chunk updates of a step and hands the mean to the outer optimizer, so every algorithm plugs into the
same synchronous, asynchronous and fault-tolerant paths. Algorithms hold no training state: running
a chunk twice gives the same answer, which is what makes re-dispatch after a failure safe.
"""
from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from meta_dist import models
from meta_dist.config import Config
from meta_dist.errors import UserError
from meta_dist.tasks.spec import TaskFamily, TaskSpec, derive_seed


@dataclass
class ChunkOutput:
    grads: dict[str, torch.Tensor]
    """Per meta-parameter update, summed over the chunk's tasks."""
    num_tasks: int
    metrics: dict[str, float] = field(default_factory=dict)
    """Per-task metrics summed over the chunk (the runtime divides by the step's task count)."""


class MetaAlgorithm(ABC):
    """Base class: owns the (stateless) network and the task family of a run.

    The meta-parameters are the network's trainable parameters (plus any `meta.*` entries an
    algorithm adds); parameters with requires_grad=False and buffers stay fixed at their seeded
    initial values, identical in every process because every process builds the network with the
    run's init seed."""

    def __init__(self, config: Config, family: TaskFamily, device: torch.device | str = "cpu",
                 model: models.ModelFactory | None = None):
        self.config = config
        self.cfg = config.algorithm
        self.family = family
        self.device = torch.device(device)
        self.model_factory = model if model is not None else models.factory(config, family)
        self.model = self.build_model(derive_seed("init", config.seed)).to(self.device)

    has_output_head = True
    """The network ends in a task-sized output layer (so test episodes must have the training ways)."""
    output_dim: int | None = None
    """What the network is built to output: None = the family's output_dim; 0 = an embedding."""
    curve_axis = "inner_steps"
    """What the evaluation curve runs over: adaptation steps, or (RL^2) the episodes of a trial."""

    # -- construction -------------------------------------------------------------------------
    def build_model(self, seed: int | None = None) -> nn.Module:
        out = self.family.output_dim if self.output_dim is None else self.output_dim
        return self.model_factory(self.family.input_shape, out, seed)

    def init_params(self, seed: int) -> dict[str, torch.Tensor]:
        """Initial meta-parameters, identical for a given seed on every machine."""
        model = self.build_model(seed)
        return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    # -- the per-chunk contract ----------------------------------------------------------------
    @abstractmethod
    def chunk_update(self, params: dict[str, torch.Tensor], specs: Sequence[TaskSpec]) -> ChunkOutput:
        """Summed update over the tasks of `specs`, computed at `params`."""

    @abstractmethod
    def eval_chunk(self, params: dict[str, torch.Tensor], specs: Sequence[TaskSpec], max_steps: int,
                   inner_lr: float, transductive_bn: bool = False) -> torch.Tensor:
        """Per-task metric after 0..max_steps adaptation steps: a [num_tasks, S] tensor (S may be 1
        for methods that do not adapt by gradient steps)."""

    @cached_property
    def takes_stats_rows(self) -> bool:
        """Whether the network's forward takes `stats_rows` (batch norm with the first rows' statistics).
        Networks without it normalize a batch with its own statistics."""
        return "stats_rows" in inspect.signature(self.model.forward).parameters

    # -- shared helpers: everything below works on a chunk, parameters stacked per task -------------
    def model_params(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The entries of `params` that belong to the network (algorithms may add `meta.*` ones)."""
        return {k: v for k, v in params.items() if not k.startswith("meta.")}

    @staticmethod
    def stack(params: dict[str, torch.Tensor], num_tasks: int) -> dict[str, torch.Tensor]:
        """One (broadcast, not copied) set of parameters per task; gradients flow back to `params`."""
        return {k: v.unsqueeze(0).expand(num_tasks, *v.shape) for k, v in params.items()}

    def forward(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """One task: `params` unstacked, `x` without the task dimension."""
        return functional_call(self.model, self.model_params(params), (x,))

    def forward_tasks(self, stacked: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """A chunk: parameters and inputs with a leading task dimension (vmap, or a loop)."""
        stacked = self.model_params(stacked)
        if self.cfg.vmap and hasattr(self.model, "forward_tasks"):  # a model's own batched kernel
            return self.model.forward_tasks(stacked, x)
        if self.cfg.vmap:  # "different": dropout draws its own mask per task (seeded per chunk)
            return vmap(self.forward, randomness="different")(stacked, x)
        return torch.stack([self.forward({k: v[t] for k, v in stacked.items()}, x[t]) for t in range(x.shape[0])])

    def task_losses(self, stacked: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Training loss of each task of a chunk: a [num_tasks] tensor."""
        return self.losses_of(self.forward_tasks(stacked, x), y)

    def losses_of(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-task training loss of outputs [T, N, ...] against targets [T, N]: a [T] tensor."""
        if self.family.metric == "mse":
            return ((out - y) ** 2).flatten(1).mean(1)
        return F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(1)

    def metric_of(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-task metric of outputs [T, N, ...] against targets [T, N]: MSE, or accuracy in [0, 1]."""
        if self.family.metric == "mse":
            return ((out - y) ** 2).flatten(1).mean(1)
        return (out.argmax(-1) == y).float().mean(1)

    def task_metrics(self, stacked: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Evaluation metric of each task of a chunk: MSE, or accuracy in [0, 1]."""
        with torch.no_grad():
            return self.metric_of(self.forward_tasks(stacked, x), y)

    def query_outputs(self, fast: dict[str, torch.Tensor], support_x: torch.Tensor, query_x: torch.Tensor,
                      transductive_bn: bool = False) -> torch.Tensor:
        """Outputs [T, Nq, ...] of adapted (stacked) parameters on each task's queries.

        Networks whose forward takes `stats_rows` (Conv-4, ResNet-12) normalize the query with the
        support set's statistics by default, so no query sees another (non-transductive);
        `transductive_bn`, and every network without `stats_rows`, normalize with the query batch's own
        statistics, the protocol behind the MAML and Reptile papers' figures.
        """
        with torch.no_grad():
            if transductive_bn or not self.takes_stats_rows:
                return self.forward_tasks(fast, query_x)
            ns = support_x.shape[1]
            x = torch.cat([support_x, query_x], dim=1)
            return forward_with_stats(self, fast, x, ns, per_task_params=True)[:, ns:]

    def query_metrics(self, fast: dict[str, torch.Tensor], batch, transductive_bn: bool) -> torch.Tensor:
        """Per-task query metric of adapted (stacked) parameters, for evaluation."""
        return self.metric_of(self.query_outputs(fast, batch.support_x, batch.query_x, transductive_bn), batch.query_y)

    # -- one new task (meta_dist.adapt, meta-dist predict) -------------------------------------------
    def adapted(self, params: dict[str, torch.Tensor], support_x: torch.Tensor, support_y: torch.Tensor,
                steps: int, lr: float) -> dict[str, torch.Tensor]:
        """Parameters adapted to each task's support set, stacked per task ([T, ...] inputs)."""
        raise UserError(f"algorithm {self.cfg.name!r} does not adapt to a new task from a support set")

    def predictor(self, params: dict[str, torch.Tensor], support_x: torch.Tensor, support_y: torch.Tensor,
                  steps: int, lr: float):
        """A function from one task's query inputs [Nq, ...] to outputs [Nq, ...] (class scores or
        regression values), after adapting to its support set (support_x [Ns, ...], support_y [Ns])."""
        fast = self.adapted(params, support_x[None], support_y[None], steps, lr or self.cfg.inner_lr)
        return lambda query_x: self.query_outputs(fast, support_x[None], query_x[None])[0]


def forward_with_stats(algorithm: MetaAlgorithm, params: dict[str, torch.Tensor], x: torch.Tensor, stats_rows: int | None,
                       per_task_params: bool) -> torch.Tensor:
    """The model over a chunk `x` [T, N, ...], batch norm using each task's first `stats_rows` rows
    (None, or a network without `stats_rows`: all rows). `params` are stacked per task when
    `per_task_params`, else shared."""
    p = algorithm.model_params(params)
    kwargs = {"stats_rows": stats_rows} if stats_rows is not None and algorithm.takes_stats_rows else {}
    if algorithm.cfg.vmap:
        fn = lambda q, xx: functional_call(algorithm.model, q, (xx,), kwargs)  # noqa: E731
        return vmap(fn, in_dims=(0 if per_task_params else None, 0), randomness="different")(p, x)
    rows = []
    for t in range(x.shape[0]):
        pt = {k: v[t] for k, v in p.items()} if per_task_params else p
        rows.append(functional_call(algorithm.model, pt, (x[t],), kwargs))
    return torch.stack(rows)
