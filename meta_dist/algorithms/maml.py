"""MAML and first-order MAML (Finn, Abbeel & Levine 2017, "Model-Agnostic Meta-Learning for Fast
Adaptation of Deep Networks"); one class, `first_order` is a flag, as in the paper.

A chunk of tasks is adapted at once: the meta-parameters are broadcast to one copy per task, the
forward pass is vectorized over tasks (torch.func.vmap of the functional model), and gradients use
ordinary autograd. Because the tasks' losses are independent, the gradient of their sum with respect
to the per-task copies is each task's own gradient; second-order MAML keeps that graph
(create_graph) and the query loss flows back through the inner steps to the shared parameters. This
is about 2x faster on small models than nesting torch.func.grad inside vmap, and exact with batch
norm, where torch.func.grad nested in vmap over F.batch_norm gave second-order gradients 0.2% off
the per-task loop's (torch 2.14, Conv-4; also in float64). First-order MAML
(Nichol et al. 2018) cuts the graph at each inner gradient. Meta-SGD and ANIL subclass this and
change only which parameters adapt and with what step sizes.
"""
from __future__ import annotations

from typing import Sequence

import torch

from meta_dist.algorithms.base import ChunkOutput, MetaAlgorithm
from meta_dist.tasks.spec import TaskSpec

Params = dict[str, torch.Tensor]


class MAML(MetaAlgorithm):
    @property
    def first_order(self) -> bool:
        return self.cfg.first_order or self.cfg.name == "fomaml"

    # -- what adapts, and how fast (overridden by Meta-SGD and ANIL) -------------------------------
    def adapted_names(self, params: Params) -> list[str]:
        return list(self.model_params(params))

    def inner_lrs(self, params: Params, lr: float) -> dict[str, torch.Tensor | float]:
        return {k: lr for k in self.adapted_names(params)}

    # -- the inner loop, on a chunk ----------------------------------------------------------------
    def adapt(self, params: Params, fast: Params, sx, sy, steps: int, lr: float, create_graph: bool) -> Params:
        """`steps` SGD steps on each task's support loss; `fast` holds per-task (stacked) parameters."""
        lrs = self.inner_lrs(params, lr)
        names = list(lrs)
        for _ in range(steps):
            if not create_graph:
                fast = {k: (v.detach().requires_grad_() if k in lrs else v) for k, v in fast.items()}
            loss = self.task_losses(fast, sx, sy).sum()
            grads = torch.autograd.grad(loss, [fast[k] for k in names], create_graph=create_graph,
                                        allow_unused=True)
            fast = dict(fast)
            for k, g in zip(names, grads):
                if g is not None:  # a parameter the loss does not use keeps its value
                    fast[k] = fast[k] - lrs[k] * g
        return fast

    def chunk_update(self, params: Params, specs: Sequence[TaskSpec]) -> ChunkOutput:
        b = self.family.materialize(specs, self.device)
        base = {k: v.detach().requires_grad_() for k, v in params.items()}
        fast = self.adapt(base, self.stack(base, b.num_tasks), b.support_x, b.support_y, self.cfg.inner_steps,
                          self.cfg.inner_lr, create_graph=not self.first_order)
        if self.first_order:  # gradient at the adapted parameters, applied to the shared ones
            fast = {k: v.detach().requires_grad_() for k, v in fast.items()}
        out = self.forward_tasks(fast, b.query_x)
        query = self.losses_of(out, b.query_y)
        wrt = fast if self.first_order else base
        names = [k for k in base if wrt[k].requires_grad]
        grads = torch.autograd.grad(query.sum(), [wrt[k] for k in names], allow_unused=True)
        update = {k: torch.zeros_like(v) for k, v in params.items()}
        for k, g in zip(names, grads):
            if g is not None:
                update[k] = g.sum(0) if self.first_order else g
        metrics = {"meta_loss": float(query.detach().sum())}
        if self.family.metric == "accuracy":
            metrics["accuracy"] = float(self.metric_of(out.detach(), b.query_y).sum())
        return ChunkOutput(update, len(specs), metrics)

    def adapted(self, params: Params, support_x, support_y, steps: int, lr: float) -> Params:
        base = {k: v.detach() for k, v in params.items()}
        fast = self.adapt(base, self.stack(base, support_x.shape[0]), support_x, support_y, steps, lr,
                          create_graph=False)
        return {k: v.detach() for k, v in fast.items()}

    # -- evaluation ------------------------------------------------------------------------------
    def eval_chunk(self, params: Params, specs: Sequence[TaskSpec], max_steps: int, inner_lr: float,
                   transductive_bn: bool = False) -> torch.Tensor:
        b = self.family.materialize(specs, self.device)
        lr = inner_lr or self.cfg.inner_lr
        base = {k: v.detach() for k, v in params.items()}
        fast = self.stack(base, b.num_tasks)
        curve = [self.query_metrics(fast, b, transductive_bn)]
        for _ in range(max_steps):
            fast = self.adapt(base, fast, b.support_x, b.support_y, 1, lr, create_graph=False)
            curve.append(self.query_metrics(fast, b, transductive_bn))
        return torch.stack(curve, dim=1)
