"""fo-Proto-MAML (Triantafillou et al. 2020, "Meta-Dataset", Sec. 4): first-order MAML whose output
layer is built per episode from the prototypes.

The network is an embedding (no head). For each task the class prototypes c_k (mean support embeddings,
as in ProtoNet) give a linear layer W_k = 2 c_k, b_k = -||c_k||^2, whose logits rank classes exactly as
ProtoNet's negative squared distances do; then `inner_steps` SGD steps on the support loss adapt the
network and that layer together. First-order: the inner gradients are constants, so the query loss
reaches the meta-parameters through the adapted network (identity Jacobian) and through the
prototypes that initialized the layer. The layer is sized by each episode's classes, so any number of
ways works, including Meta-Dataset's variable-way episodes. At test the curve runs over adaptation
steps; after 0 steps it is ProtoNet's classifier.
"""
from __future__ import annotations

from typing import Sequence

import torch

from meta_dist.algorithms.base import ChunkOutput
from meta_dist.algorithms.maml import MAML
from meta_dist.algorithms.protonet import prototypes
from meta_dist.tasks.spec import TaskBatch, TaskSpec

Params = dict[str, torch.Tensor]
Head = tuple[torch.Tensor, torch.Tensor]  # W [T, ways, D], b [T, ways]


def head_logits(embeddings: torch.Tensor, head: Head) -> torch.Tensor:
    """[T, N, D] embeddings -> [T, N, ways] logits of the per-task linear layer."""
    w, b = head
    return torch.bmm(embeddings, w.transpose(1, 2)) + b.unsqueeze(1)


class ProtoMAML(MAML):
    has_output_head = False
    output_dim = 0

    def prototype_head(self, fast: Params, support_x, support_y) -> Head:
        """The layer the prototypes of each task's support embeddings define."""
        ways = int(support_y.max()) + 1
        c = prototypes(self.forward_tasks(fast, support_x), support_y, ways)
        return 2 * c, -(c * c).sum(-1)

    def inner_step(self, fast: Params, head: Head, sx, sy, lr: float) -> tuple[Params, Head]:
        """One first-order SGD step of network and layer on each task's support loss."""
        leaves = {k: v.detach().requires_grad_() for k, v in self.model_params(fast).items()}
        w, b = (t.detach().requires_grad_() for t in head)
        with torch.enable_grad():
            loss = self.losses_of(head_logits(self.forward_tasks(leaves, sx), (w, b)), sy).sum()
            grads = torch.autograd.grad(loss, [*leaves.values(), w, b], allow_unused=True)
        fast = dict(fast)
        for k, g in zip(leaves, grads):
            if g is not None:  # a parameter the loss does not use keeps its value
                fast[k] = fast[k] - lr * g
        return fast, (head[0] - lr * grads[-2], head[1] - lr * grads[-1])

    def adapt_head(self, params: Params, b: TaskBatch, steps: int, lr: float) -> tuple[Params, Head]:
        fast = self.stack(params, b.num_tasks)
        head = self.prototype_head(fast, b.support_x, b.support_y)
        for _ in range(steps):
            fast, head = self.inner_step(fast, head, b.support_x, b.support_y, lr)
        return fast, head

    def chunk_update(self, params: Params, specs: Sequence[TaskSpec]) -> ChunkOutput:
        b = self.family.materialize(specs, self.device)
        base = {k: v.detach().requires_grad_() for k, v in params.items()}
        fast, head = self.adapt_head(base, b, self.cfg.inner_steps, self.cfg.inner_lr)
        logits = head_logits(self.forward_tasks(fast, b.query_x), head)
        query = self.losses_of(logits, b.query_y)
        names = list(base)
        grads = torch.autograd.grad(query.sum(), [base[k] for k in names], allow_unused=True)
        update = {k: (g if g is not None else torch.zeros_like(base[k])) for k, g in zip(names, grads)}
        accuracy = (logits.detach().argmax(-1) == b.query_y).float().mean(1)
        return ChunkOutput(update, len(specs), {"meta_loss": float(query.detach().sum()),
                                                "accuracy": float(accuracy.sum())})

    def eval_chunk(self, params: Params, specs: Sequence[TaskSpec], max_steps: int, inner_lr: float,
                   transductive_bn: bool = False) -> torch.Tensor:
        b = self.family.materialize(specs, self.device)
        lr = inner_lr or self.cfg.inner_lr
        with torch.no_grad():
            fast = self.stack({k: v.detach() for k, v in params.items()}, b.num_tasks)
            head = self.prototype_head(fast, b.support_x, b.support_y)

        def accuracy() -> torch.Tensor:
            out = self.query_outputs(fast, b.support_x, b.query_x, transductive_bn)
            return (head_logits(out, head).argmax(-1) == b.query_y).float().mean(1)

        curve = [accuracy()]
        for _ in range(max_steps):
            fast, head = self.inner_step(fast, head, b.support_x, b.support_y, lr)
            curve.append(accuracy())
        return torch.stack(curve, dim=1)

    def predictor(self, params: Params, support_x, support_y, steps: int, lr: float):
        """Class scores [Nq, ways] of one new task's queries after `steps` adaptation steps."""
        base = {k: v.detach() for k, v in params.items()}
        b = TaskBatch(support_x[None], support_y[None], support_x[None], support_y[None])
        fast, head = self.adapt_head(base, b, steps, lr or self.cfg.inner_lr)
        fast = {k: v.detach() for k, v in fast.items()}
        head = (head[0].detach(), head[1].detach())
        return lambda query_x: head_logits(self.query_outputs(fast, support_x[None], query_x[None]), head)[0]
