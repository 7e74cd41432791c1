"""learn2learn's module utilities: differentiable clones and in-place, graph-preserving updates.

A clone's parameters are `tensor.clone()`s of the original ones, so they are non-leaf tensors whose
gradients flow back to the original parameters; an update replaces a parameter by `p + u`, again a
non-leaf tensor, instead of writing into it. That is what lets an outer loss differentiate through
inner-loop steps with plain autograd, at the cost of storing tensors that are not `nn.Parameter`s in
a module's `_parameters` (fine for forward passes and `module.parameters()`, not for optimizers).

Buffers follow learn2learn: a buffer that requires grad is cloned like a parameter; any other buffer
(batch norm running statistics) stays shared with the original module, so running statistics that
a clone updates in place accumulate in the original, as they do with learn2learn.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import torch
from torch import nn


def magic_box(x):
    """DiCE's magic box (Foerster et al. 2018): evaluates to 1, its gradient is that of `x`."""
    if isinstance(x, torch.Tensor):
        return torch.exp(x - x.detach())
    return x


def clone_parameters(param_list) -> list[torch.Tensor]:
    """Differentiable copies of a list of tensors (gradients flow back to the originals)."""
    return [p.clone() for p in param_list]


def accuracy(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Fraction of rows whose arg-max prediction equals the target."""
    return (predictions.argmax(dim=1).long() == targets.long()).float().mean()


def _refresh_rnn_weights(module: nn.Module) -> None:
    """RNNs keep a list of their weight tensors; rebuild it after the parameter dict changed."""
    if isinstance(module, nn.RNNBase):
        module._init_flat_weights()


def _shallow_copy(module: nn.Module) -> nn.Module:
    """A new module object sharing every attribute, with its own parameter/buffer/module dicts."""
    copy = module.__new__(type(module))
    copy.__dict__ = module.__dict__.copy()
    copy._parameters = module._parameters.copy()
    copy._buffers = module._buffers.copy()
    copy._modules = module._modules.copy()
    return copy


def _clone_tensor(tensor: torch.Tensor, memo: dict) -> torch.Tensor:
    # The memo is keyed by the original tensor object (which it keeps alive), so a tensor that two
    # modules share (tied weights) maps to one clone and stays shared in the copy.
    if tensor not in memo:
        memo[tensor] = tensor.clone()
    return memo[tensor]


def clone_module(module, memo: dict | None = None):
    """A copy of `module` whose parameters are differentiable clones of the original ones.

    Gradients of anything computed with the copy flow back to the original parameters. Submodules
    are copied recursively; parameters shared between submodules stay shared in the copy. Anything
    that is not an `nn.Module` is returned as is.
    """
    if not isinstance(module, nn.Module):
        return module
    memo = {} if memo is None else memo
    clone = _shallow_copy(module)
    for key, param in module._parameters.items():
        if param is not None:
            clone._parameters[key] = _clone_tensor(param, memo)
    for key, buffer in module._buffers.items():
        if buffer is not None and buffer.requires_grad:
            clone._buffers[key] = _clone_tensor(buffer, memo)
    for key, child in module._modules.items():
        clone._modules[key] = clone_module(child, memo)
    _refresh_rnn_weights(clone)
    return clone


def _updated(tensor: torch.Tensor | None, memo: dict) -> torch.Tensor | None:
    """`tensor + tensor.update` (once per tensor object), or None when there is nothing to apply."""
    if tensor is None:
        return None
    if tensor in memo:
        return memo[tensor]
    update = getattr(tensor, "update", None)
    if update is None:
        return None
    memo[tensor] = tensor + update
    return memo[tensor]


def update_module(module: nn.Module, updates: Sequence[torch.Tensor | None] | None = None,
                  memo: dict | None = None) -> nn.Module:
    """Apply p <- p + u to every parameter (and buffer) that has an update, in place, differentiably.

    `updates`, aligned with `module.parameters()`, is stored as each parameter's `.update` first;
    without it, the `.update` attributes already set are used. A None update leaves the tensor as
    it is. Updated tensors are `p + u` (non-leaf), so gradients flow back through the update.
    Returns `module`.
    """
    memo = {} if memo is None else memo
    if updates is not None:
        params = list(module.parameters())
        if len(updates) != len(params):
            warnings.warn(f"update_module(): {len(params)} parameters but {len(updates)} updates; "
                          f"only the first {min(len(params), len(updates))} are paired", stacklevel=2)
        for p, u in zip(params, updates):
            p.update = u
    for store in (module._parameters, module._buffers):
        for key, tensor in store.items():
            new = _updated(tensor, memo)
            if new is not None:
                store[key] = new
    for key, child in module._modules.items():
        module._modules[key] = update_module(child, None, memo)
    _refresh_rnn_weights(module)
    return module


def detach_module(module, keep_requires_grad: bool = False) -> None:
    """Detach a (cloned) module's parameters and grad-requiring buffers from the graph, in place.

    With `keep_requires_grad`, tensors that required grad still do afterwards (as new leaves), so
    the module can be fine-tuned on its own. Works in place and returns nothing, as learn2learn's.
    """
    if not isinstance(module, nn.Module):
        return
    for store, only_grad in ((module._parameters, False), (module._buffers, True)):
        for tensor in store.values():
            if tensor is None or (only_grad and not tensor.requires_grad):
                continue
            requires_grad = tensor.requires_grad
            tensor.detach_()
            if keep_requires_grad and requires_grad:
                tensor.requires_grad_()
    for child in module._modules.values():
        detach_module(child, keep_requires_grad)
    _refresh_rnn_weights(module)


__all__ = ["accuracy", "clone_module", "clone_parameters", "detach_module", "magic_box", "update_module"]
