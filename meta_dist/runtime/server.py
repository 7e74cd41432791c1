"""The parameter server: versioned meta-parameters and the outer optimizer.

A plain class (the Ray actor is a thin wrapper in backend.py). It accepts only the mean update of
a step (or, in asynchronous mode, of a group of chunks), refuses non-finite updates outright, and
bumps the version on every applied update. State entries (`meta.state.*`, params.py) take the mean
update's values as they are; the outer optimizer moves every other entry. (Bounded staleness in
asynchronous mode is enforced by the driver, which knows the version each chunk result was computed on.)
"""
from __future__ import annotations

import numpy as np
import torch

from meta_dist.config import Config, linear_anneal
from meta_dist.params import STATE_PREFIX, ParamLayout


def meta_lr_at(config: Config, step: int) -> float:
    """The outer step size at (1-based) meta-step `step` under the configured schedule."""
    a = config.algorithm
    if a.meta_lr_schedule == "linear":
        return linear_anneal(a.meta_lr, step, config.steps)
    if a.meta_lr_schedule == "step":
        return a.meta_lr * 0.5 ** ((step - 1) // a.meta_lr_decay_every)
    return a.meta_lr


class ParameterServer:
    def __init__(self, config: Config, init_params: dict[str, torch.Tensor]):
        self.config = config
        self.layout = ParamLayout.of(init_params)
        self.flat = torch.nn.Parameter(self.layout.flatten(init_params).detach().clone().float())
        state = self.layout.mask(STATE_PREFIX)
        self.state_entries = state if state.any() else None
        a = config.algorithm
        if a.meta_optimizer == "adam":
            self.optimizer = torch.optim.Adam([self.flat], lr=a.meta_lr)
        else:
            self.optimizer = torch.optim.SGD([self.flat], lr=a.meta_lr)
        self.version = 0

    def params(self) -> tuple[int, np.ndarray]:
        """(version, flat float32 parameters): the broadcast unit, one object-store put per version."""
        return self.version, self.flat.detach().numpy().copy()

    def apply(self, mean_update: np.ndarray | torch.Tensor, step: int) -> tuple[int, np.ndarray]:
        """One outer-optimizer step with `mean_update` as the gradient; returns the new params."""
        update = torch.from_numpy(np.array(mean_update, dtype=np.float32))  # a private, writable copy
        if update.shape != self.flat.shape:
            raise ValueError(f"update has {update.numel()} values, parameters have {self.flat.numel()}")
        if not torch.isfinite(update).all():
            raise FloatingPointError("non-finite update reached the parameter server")
        for group in self.optimizer.param_groups:
            group["lr"] = meta_lr_at(self.config, step)
        self.flat.grad = update if self.state_entries is None else update.masked_fill(self.state_entries, 0.0)
        self.optimizer.step()
        self.flat.grad = None
        if self.state_entries is not None:
            with torch.no_grad():
                self.flat[self.state_entries] = update[self.state_entries]
        self.version += 1
        return self.params()

    def named_params(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.layout.unflatten(self.flat.detach()).items()}

    def state_dict(self) -> dict:
        return {"params": self.named_params(), "optimizer": self.optimizer.state_dict(),
                "version": self.version}

    def load_state_dict(self, state: dict) -> None:
        loaded = ParamLayout.of(state["params"])
        if loaded != self.layout:
            raise ValueError("checkpoint parameters do not match the configured model")
        with torch.no_grad():
            self.flat.copy_(self.layout.flatten(state["params"]))
        self.optimizer.load_state_dict(state["optimizer"])
        self.version = int(state["version"])
