"""Shared machinery of the metric-based methods (ProtoNet, MatchingNet, Siamese).

They learn an embedding network (the configured model with no head) and classify a task's queries by
comparing embeddings with its support set, so there is no inner loop: one forward, one backward.
A chunk's tasks are embedded together with torch.func.vmap over tasks (the shared weights are not
batched, so the convolutions run as one large batch) while batch norm still normalizes each task
with its own statistics.

Batch-norm statistics: training embeds support and query together (as Snell et al.'s code does);
evaluation with `transductive_bn=True` does the same, with `False` every image is normalized with
the support set's statistics only (`stats_rows` of Conv-4 and ResNet-12), so no query sees another
query; a network without `stats_rows` uses the whole episode's statistics (transductive). The trade-off: support-only statistics come from ways*shots images (5 for 5-way 1-shot), noisier than
the training batch, which typically costs a little accuracy; it is the honest, non-transductive
number.
"""
from __future__ import annotations

from abc import abstractmethod
from typing import Sequence

import torch
import torch.nn.functional as F

from meta_dist.algorithms.base import ChunkOutput, MetaAlgorithm, forward_with_stats
from meta_dist.tasks.spec import TaskBatch, TaskSpec

Params = dict[str, torch.Tensor]


def similarity(distance: str, q: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """[T, Nq, D] x [T, Ns, D] -> [T, Nq, Ns]: negative squared Euclidean distance, or cosine similarity."""
    if distance == "cosine":
        return torch.bmm(F.normalize(q, dim=-1), F.normalize(s, dim=-1).transpose(1, 2))
    return -((q.unsqueeze(2) - s.unsqueeze(1)) ** 2).sum(-1)


class MetricAlgorithm(MetaAlgorithm):
    """Embedding network + a rule turning (support, query) embeddings into per-class scores."""

    has_output_head = False
    output_dim = 0

    # -- what subclasses define -------------------------------------------------------------------
    @abstractmethod
    def scores(self, params: Params, support: torch.Tensor, support_y: torch.Tensor, query: torch.Tensor,
               ways: int) -> torch.Tensor:
        """[T, Nq, ways] class scores (logits or log-probabilities) of each query."""

    def task_loss(self, params: Params, support, support_y, query, query_y, ways: int) -> torch.Tensor:
        """[T] training loss; by default cross-entropy of the query scores."""
        s = self.scores(params, support, support_y, query, ways)
        return F.cross_entropy(s.flatten(0, 1), query_y.flatten(), reduction="none").view(query_y.shape).mean(1)

    # -- shared ------------------------------------------------------------------------------------
    def embedding_dim(self) -> int:
        """Width of the network's embedding, measured by one forward pass of two blank inputs."""
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            out = self.model(torch.zeros(2, *self.family.input_shape, device=self.device))
        return int(out.shape[-1])

    def embed(self, params: Params, b: TaskBatch, transductive: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Support and query embeddings [T, N, D], one forward pass per chunk."""
        ns = b.support_x.shape[1]
        x = torch.cat([b.support_x, b.query_x], dim=1)
        e = forward_with_stats(self, params, x, None if transductive else ns, per_task_params=False)
        return e[:, :ns], e[:, ns:]

    def similarity(self, q: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """[T, Nq, Ns] similarities by the configured distance, times `algorithm.metric_scale`."""
        return self.cfg.metric_scale * similarity(self.cfg.distance, q, s)

    @staticmethod
    def ways_of(b: TaskBatch) -> int:
        return int(b.support_y.max()) + 1

    def chunk_update(self, params: Params, specs: Sequence[TaskSpec]) -> ChunkOutput:
        b = self.family.materialize(specs, self.device)
        base = {k: v.detach().requires_grad_() for k, v in params.items()}
        support, query = self.embed(base, b, transductive=True)
        ways = self.ways_of(b)
        losses = self.task_loss(base, support, b.support_y, query, b.query_y, ways)
        names = list(base)
        grads = torch.autograd.grad(losses.sum(), [base[k] for k in names], allow_unused=True)
        out = {k: (g if g is not None else torch.zeros_like(base[k])) for k, g in zip(names, grads)}
        with torch.no_grad():
            pred = self.scores(base, support, b.support_y, query, ways).argmax(-1)
            acc = (pred == b.query_y).float().mean(1)
        return ChunkOutput(out, len(specs), {"meta_loss": float(losses.detach().sum()), "accuracy": float(acc.sum())})

    def predictor(self, params: Params, support_x, support_y, steps: int, lr: float):
        """Scores [Nq, ways] of one task's queries against its support set (no gradient steps)."""
        params = {k: v.detach() for k, v in params.items()}
        ways = int(support_y.max()) + 1

        def scores(query_x: torch.Tensor) -> torch.Tensor:
            b = TaskBatch(support_x[None], support_y[None], query_x[None], support_y.new_zeros(1, len(query_x)))
            with torch.no_grad():
                support, query = self.embed(params, b, transductive=False)
                return self.scores(params, support, b.support_y, query, ways)[0]
        return scores

    def eval_chunk(self, params: Params, specs: Sequence[TaskSpec], max_steps: int, inner_lr: float,
                   transductive_bn: bool = False) -> torch.Tensor:
        """[T, 1] query accuracy: metric methods do not adapt by gradient steps."""
        b = self.family.materialize(specs, self.device)
        with torch.no_grad():
            params = {k: v.detach() for k, v in params.items()}
            support, query = self.embed(params, b, transductive_bn)
            pred = self.scores(params, support, b.support_y, query, self.ways_of(b)).argmax(-1)
            return (pred == b.query_y).float().mean(1, keepdim=True)
