"""The single-process programs `meta-dist bench` measures the runtime against.

Both are what a user writes without meta-dist, on the same workload and the same tasks as the
runtime (the tasks of step s derive from (seed, s); spec derivation and materialization are timed):
- `PerTaskLoop`: the learn2learn-style loop; per task, adapt a copy of the parameters with autograd and
  backprop the query loss, then one Adam step.
- `VmapLoop`: the same meta-gradient in one vectorized call: `torch.func.grad` for the inner steps,
  `torch.func.vmap` over the meta-batch, one backward. The fastest plain single process on small models,
  so the one to beat.
`tests/integration/test_bench.py` checks that each one's meta-gradient equals the runtime's.
"""
from __future__ import annotations

import contextlib
import copy
import time

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from meta_dist.config import Config
from meta_dist.tasks.spec import TaskBatch, TaskFamily

WARMUP_STEPS = 2


class PerTaskLoop:
    """Per-task second-order (or first-order) MAML with autograd, as in learn2learn's examples."""

    kind = "per-task loop"

    def __init__(self, config: Config, family: TaskFamily, model: torch.nn.Module, init: dict[str, torch.Tensor],
                 device: str = "cpu"):
        self.config, self.family, self.device = config, family, torch.device(device)
        self.model = model if self.device.type == "cpu" else copy.deepcopy(model).to(self.device)
        self.cfg = config.algorithm
        self.first_order = self.cfg.first_order or self.cfg.name == "fomaml"
        self.params = {k: v.detach().to(self.device, copy=True).requires_grad_() for k, v in init.items()}
        self.optimizer = torch.optim.Adam(self.params.values(), lr=self.cfg.meta_lr)

    def loss(self, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = functional_call(self.model, params, (x,))
        return ((out - y) ** 2).mean() if self.family.metric == "mse" else F.cross_entropy(out, y)

    def backward(self, batch: TaskBatch) -> None:
        """Accumulates the query-loss gradient summed over the batch's tasks into `.grad`."""
        for t in range(batch.num_tasks):
            fast = dict(self.params)
            for _ in range(self.cfg.inner_steps):
                support = self.loss(fast, batch.support_x[t], batch.support_y[t])
                grads = torch.autograd.grad(support, list(fast.values()), create_graph=not self.first_order)
                fast = {k: v - self.cfg.inner_lr * g for (k, v), g in zip(fast.items(), grads)}
            self.loss(fast, batch.query_x[t], batch.query_y[t]).backward()

    def meta_gradient(self, batch: TaskBatch) -> dict[str, torch.Tensor]:
        """The query-loss gradient summed over the batch's tasks."""
        for p in self.params.values():
            p.grad = None
        self.backward(batch)
        return {k: p.grad for k, p in self.params.items()}

    def step(self, step: int) -> int:
        """One meta-step on the tasks of `step`; returns the number of tasks."""
        specs = self.family.specs(self.config.seed, "train", step, self.cfg.meta_batch_size)
        grads = self.meta_gradient(self.family.materialize(specs).to(self.device))
        for g in grads.values():
            g.div_(len(specs))
        self.optimizer.step()
        return len(specs)


class VmapLoop(PerTaskLoop):
    """The same meta-step with the inner loop in torch.func and the meta-batch vmapped."""

    kind = "torch.func vmap"

    def task_loss(self, params: dict[str, torch.Tensor], xs: torch.Tensor, ys: torch.Tensor,
                  xq: torch.Tensor, yq: torch.Tensor) -> torch.Tensor:
        for _ in range(self.cfg.inner_steps):
            grads = grad(self.loss)(params, xs, ys)
            if self.first_order:
                grads = {k: g.detach() for k, g in grads.items()}
            params = {k: v - self.cfg.inner_lr * grads[k] for k, v in params.items()}
        return self.loss(params, xq, yq)

    def backward(self, batch: TaskBatch) -> None:
        losses = vmap(self.task_loss, in_dims=(None, 0, 0, 0, 0))(
            self.params, batch.support_x, batch.support_y, batch.query_x, batch.query_y)
        losses.sum().backward()


@contextlib.contextmanager
def torch_threads(threads: int):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def measure(loop: PerTaskLoop, duration_s: float, threads: int) -> dict:
    """Tasks/s of `loop` on `threads` torch threads over `duration_s` after a warm-up (on a GPU, up to
    the end of the last step's kernels)."""
    sync = torch.cuda.synchronize if loop.device.type == "cuda" else (lambda: None)
    with torch_threads(threads):
        for step in range(1, WARMUP_STEPS + 1):
            loop.step(step)
        sync()
        num_tasks, step, start = 0, WARMUP_STEPS, time.perf_counter()
        while time.perf_counter() - start < duration_s:
            step += 1
            num_tasks += loop.step(step)
        sync()
        return {"kind": loop.kind, "threads": threads, "device": loop.device.type,
                "tasks_per_s": num_tasks / (time.perf_counter() - start)}
