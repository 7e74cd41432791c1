"""learn2learn's gradient-based meta-learners: MAML and Meta-SGD as nn.Module wrappers.

The wrapper holds the meta-parameters (`module`, and Meta-SGD's step sizes `lrs`). `clone()` returns
a learner around a differentiable copy of the module (`utils.clone_module`); `learner.adapt(loss)`
takes one SGD step on that copy in place (`utils.update_module`), keeping the graph, so a loss
computed with the adapted learner backpropagates through the step to the wrapper's parameters.
Second order by default (create_graph); `first_order=True` treats the inner gradient as a constant,
which drops the Hessian term but keeps the identity path from adapted to original parameters.

This is the imperative, one-task-at-a-time style of learn2learn scripts; meta-dist's own
`meta_dist.algorithms.maml` computes the same meta-gradient functionally over a chunk of tasks.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from meta_dist.compat.l2l.utils import clone_module, clone_parameters, update_module

_HINT = ("learn2learn compat: if some parameters are frozen (requires_grad=False) or unused by the loss, "
         "pass allow_nograd=True and/or allow_unused=True")


def inner_gradients(module: nn.Module, loss: torch.Tensor, first_order: bool, allow_unused: bool,
                    allow_nograd: bool) -> list[torch.Tensor | None]:
    """d loss / d p for every parameter of `module`, in `module.parameters()` order.

    Second order keeps the graph of the gradients (create_graph). `allow_nograd` skips parameters
    that do not require grad (their entry is None); `allow_unused` gives None for parameters the
    loss does not depend on. Autograd errors propagate, with a note naming those two options.
    """
    params = list(module.parameters())
    wanted = [p for p in params if p.requires_grad] if allow_nograd else params
    second_order = not first_order
    try:
        grads = torch.autograd.grad(loss, wanted, retain_graph=second_order, create_graph=second_order,
                                    allow_unused=allow_unused)
    except RuntimeError as err:
        err.add_note(_HINT)
        raise
    found = iter(grads)
    return [next(found) if (p.requires_grad or not allow_nograd) else None for p in params]


def maml_update(model: nn.Module, lr: float, grads: Sequence[torch.Tensor | None] | None = None) -> nn.Module:
    """One differentiable SGD step p <- p - lr * g on `model` in place (None gradients: no step)."""
    updates = None if grads is None else [None if g is None else -lr * g for g in grads]
    return update_module(model, updates=updates)


def meta_sgd_update(model: nn.Module, lrs: Sequence[torch.Tensor],
                    grads: Sequence[torch.Tensor | None] | None = None) -> nn.Module:
    """One Meta-SGD step p <- p - lr_p * g, element-wise per-parameter step sizes, in place."""
    updates = None if grads is None else [None if g is None else -lr * g for lr, g in zip(lrs, grads)]
    return update_module(model, updates=updates)


class BaseLearner(nn.Module):
    """A wrapper around `module`: calling it calls the module, unknown attributes are the module's."""

    def __init__(self, module: nn.Module | None = None):
        super().__init__()
        self.module = module

    def __getattr__(self, attr):
        try:
            return super().__getattr__(attr)
        except AttributeError:
            module = self.__dict__.get("_modules", {}).get("module")
            if module is None:
                raise
            return getattr(module, attr)

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


class _GradientLearner(BaseLearner):
    """Shared clone/adapt logic; subclasses say how a gradient becomes an update."""

    def __init__(self, module, first_order, allow_unused, allow_nograd):
        super().__init__(module)
        self.first_order = first_order
        self.allow_nograd = allow_nograd
        self.allow_unused = allow_nograd if allow_unused is None else allow_unused

    def _options(self, first_order, allow_unused, allow_nograd) -> tuple[bool, bool, bool]:
        """Per-call options, falling back to the learner's own."""
        first_order = self.first_order if first_order is None else first_order
        allow_nograd = self.allow_nograd if allow_nograd is None else allow_nograd
        allow_unused = self.allow_unused if allow_unused is None else allow_unused
        return bool(first_order), bool(allow_unused), bool(allow_nograd)

    def _step(self, grads: list[torch.Tensor | None]) -> nn.Module:
        raise NotImplementedError

    def adapt(self, loss: torch.Tensor, first_order: bool | None = None, allow_unused: bool | None = None,
              allow_nograd: bool | None = None) -> None:
        """One SGD step on the support `loss`, applied in place to this (cloned) learner's module."""
        first_order, allow_unused, allow_nograd = self._options(first_order, allow_unused, allow_nograd)
        grads = inner_gradients(self.module, loss, first_order, allow_unused, allow_nograd)
        self.module = self._step(grads)


class MAML(_GradientLearner):
    """MAML (Finn et al. 2017) with a fixed inner step size `lr`; first-order MAML with `first_order`.

    Example (one task of a meta-batch)::

        maml = MAML(model, lr=0.5)
        learner = maml.clone()
        learner.adapt(loss_fn(learner(support_x), support_y))
        loss_fn(learner(query_x), query_y).backward()   # gradients land on model's parameters
    """

    def __init__(self, model: nn.Module, lr: float, first_order: bool = False, allow_unused: bool | None = None,
                 allow_nograd: bool = False):
        super().__init__(model, first_order, allow_unused, allow_nograd)
        self.lr = lr

    def _step(self, grads):
        return maml_update(self.module, self.lr, grads)

    def clone(self, first_order: bool | None = None, allow_unused: bool | None = None,
              allow_nograd: bool | None = None) -> "MAML":
        """A learner around a differentiable copy of the module, ready to `adapt`."""
        first_order, allow_unused, allow_nograd = self._options(first_order, allow_unused, allow_nograd)
        return MAML(clone_module(self.module), lr=self.lr, first_order=first_order, allow_unused=allow_unused,
                    allow_nograd=allow_nograd)


class MetaSGD(_GradientLearner):
    """Meta-SGD (Li et al. 2017): MAML whose inner step sizes are learned, one per parameter entry.

    `lrs` (default: a ParameterList of tensors shaped like the parameters, filled with `lr`) are
    meta-parameters: a clone holds differentiable copies, so the query loss trains them too, in
    first-order mode as well (only the gradient is treated as a constant there).
    `allow_unused` and `allow_nograd` mean what they mean for MAML.
    """

    def __init__(self, model: nn.Module, lr: float = 1.0, first_order: bool = False, lrs=None, *,
                 allow_unused: bool | None = None, allow_nograd: bool = False):
        super().__init__(model, first_order, allow_unused, allow_nograd)
        if lrs is None:
            lrs = nn.ParameterList([nn.Parameter(torch.full_like(p, lr).detach()) for p in model.parameters()])
        self.lr = lr
        self.lrs = lrs

    def _step(self, grads):
        if len(self.lrs) != len(grads):
            raise ValueError(f"MetaSGD has {len(self.lrs)} step-size tensors for {len(grads)} parameters; "
                             f"lrs must be aligned with module.parameters()")
        return meta_sgd_update(self.module, self.lrs, grads)

    def clone(self, first_order: bool | None = None, allow_unused: bool | None = None,
              allow_nograd: bool | None = None) -> "MetaSGD":
        """A learner around differentiable copies of the module and of the step sizes."""
        first_order, allow_unused, allow_nograd = self._options(first_order, allow_unused, allow_nograd)
        return MetaSGD(clone_module(self.module), lr=self.lr, first_order=first_order,
                       lrs=clone_parameters(self.lrs), allow_unused=allow_unused, allow_nograd=allow_nograd)


__all__ = ["BaseLearner", "MAML", "MetaSGD", "maml_update", "meta_sgd_update"]
