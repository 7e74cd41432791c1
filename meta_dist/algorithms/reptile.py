"""Reptile (Nichol, Achiam & Schulman 2018, "On First-Order Meta-Learning Algorithms").

Each task runs `inner_steps` steps of SGD or Adam (beta1 = 0, the paper's Omniglot setting) on its
support data, in minibatches of `inner_batch_size` that cycle through the data in a fixed order (for
classification, shot by shot across the classes, so that a minibatch of a 10-shot support set holds every
class, as the paper's shuffled minibatches do, and never one class alone); its
update is the pseudo-gradient theta - phi. The runtime averages that over the meta-batch and the
outer optimizer (SGD with the outer step size, annealed linearly in the paper) applies it:
theta <- theta - eps * mean(theta - phi) = theta + eps * mean(phi - theta). A chunk's tasks adapt
together, vectorized over tasks like MAML's inner loop.

The paper's code keeps one Adam optimizer for all tasks, so its second-moment estimates (an average
of squared gradients over the last thousand or so inner steps) scale each task's steps, at training and
at test. `algorithm.carry_inner_state` does the same in a form that does not depend on which worker
runs which task: the estimates and the step count are meta-state (`meta.state.adam_*`); every task of a
step starts from them and the next step's state is the tasks' mean. Without it, each task starts them
at zero, and its first Adam step moves every weight by the step size.
"""
from __future__ import annotations

from typing import Sequence

import torch

from meta_dist.algorithms.base import ChunkOutput, MetaAlgorithm
from meta_dist.errors import UserError
from meta_dist.params import STATE_PREFIX
from meta_dist.tasks.spec import TaskSpec

Params = dict[str, torch.Tensor]
ADAM_BETA2, ADAM_EPS = 0.999, 1e-8
SECOND, COUNT = STATE_PREFIX + "adam_v.", STATE_PREFIX + "adam_t"  # carried Adam state (per parameter, steps)


def minibatch_order(y: torch.Tensor) -> list[int]:
    """The order in which minibatches cycle through one task's examples: for class labels, each class's
    first example, then each class's second, and so on (stable); for regression targets, as given."""
    if y.is_floating_point():
        return list(range(len(y)))
    rank = torch.zeros_like(y)
    for c in y.unique():
        members = y == c
        rank[members] = torch.arange(int(members.sum()))
    return torch.sort(rank, stable=True).indices.tolist()


class Reptile(MetaAlgorithm):
    def init_params(self, seed: int) -> Params:
        params = super().init_params(seed)
        if self.cfg.carry_inner_state:
            if self.cfg.inner_optimizer != "adam":
                raise UserError("algorithm.carry_inner_state carries the inner Adam's state; set "
                                "algorithm.inner_optimizer: adam, or drop carry_inner_state")
            params.update({SECOND + k: torch.zeros_like(v) for k, v in list(params.items())})
            params[COUNT] = torch.zeros(())
        return params

    def inner_loop(self, fast: Params, x, y, steps: int, lr: float, on_step=None) -> Params:
        """Per-task SGD or Adam(beta1=0) on minibatches of (x, y); `fast` is stacked per task.
        `on_step(i, fast)` sees the parameters after each step (evaluation curves, in one pass).
        Carried Adam state in `fast` is where each task's estimates start, and comes back advanced."""
        n = x.shape[1]
        bs = self.cfg.inner_batch_size or n
        order = minibatch_order(y[0])
        names = list(self.model_params(fast))
        carried = COUNT in fast
        second = {k: fast[SECOND + k] if carried else torch.zeros_like(fast[k]) for k in names}
        done = int(fast[COUNT][0]) if carried else 0  # identical for every task of a chunk
        for i in range(steps):
            idx = [order[((i * bs) + j) % n] for j in range(bs)]
            fast = {k: v.detach().requires_grad_() for k, v in fast.items()}
            loss = self.task_losses(fast, x[:, idx], y[:, idx]).sum()
            grads = dict(zip(names, torch.autograd.grad(loss, [fast[k] for k in names], allow_unused=True)))
            with torch.no_grad():
                for k, g in grads.items():
                    if g is None:  # a parameter the loss does not use keeps its value
                        continue
                    if self.cfg.inner_optimizer == "adam":
                        second[k] = ADAM_BETA2 * second[k] + (1 - ADAM_BETA2) * g * g
                        v_hat = second[k] / (1 - ADAM_BETA2 ** (done + i + 1))
                        fast[k] = fast[k] - lr * g / (v_hat.sqrt() + ADAM_EPS)
                    else:
                        fast[k] = fast[k] - lr * g
            if on_step is not None:
                on_step(i + 1, {k: v.detach() for k, v in fast.items()})
        if carried:
            fast.update({SECOND + k: second[k] for k in names})
            fast[COUNT] = torch.full_like(fast[COUNT], float(done + steps))
        return {k: v.detach() for k, v in fast.items()}

    def chunk_update(self, params: Params, specs: Sequence[TaskSpec]) -> ChunkOutput:
        b = self.family.materialize(specs, self.device)
        base = {k: v.detach() for k, v in params.items()}
        phi = self.inner_loop(self.stack(base, b.num_tasks), b.support_x, b.support_y,
                              self.cfg.inner_steps, self.cfg.inner_lr)
        # Weights: the pseudo-gradient; state entries: their new values, which the step averages.
        delta = {k: (phi[k] if k.startswith(STATE_PREFIX) else base[k].unsqueeze(0) - phi[k]).sum(0) for k in base}
        metrics = {"meta_loss": float(self.task_losses(phi, b.query_x, b.query_y).detach().sum())}
        if self.family.metric == "accuracy":
            metrics["accuracy"] = float(self.task_metrics(phi, b.query_x, b.query_y).sum())
        return ChunkOutput(delta, len(specs), metrics)

    def adapted(self, params: Params, support_x, support_y, steps: int, lr: float) -> Params:
        base = {k: v.detach() for k, v in params.items()}
        return self.inner_loop(self.stack(base, support_x.shape[0]), support_x, support_y, steps, lr)

    def eval_chunk(self, params: Params, specs: Sequence[TaskSpec], max_steps: int, inner_lr: float,
                   transductive_bn: bool = False) -> torch.Tensor:
        b = self.family.materialize(specs, self.device)
        lr = inner_lr or self.cfg.inner_lr
        base = self.stack({k: v.detach() for k, v in params.items()}, b.num_tasks)
        curve = [self.query_metrics(base, b, transductive_bn)]
        self.inner_loop(base, b.support_x, b.support_y, max_steps, lr,
                        on_step=lambda _, fast: curve.append(self.query_metrics(fast, b, transductive_bn)))
        return torch.stack(curve, dim=1)
