"""Meta-parameters as one flat tensor plus a layout, the form in which they cross processes.

A flat float32 vector travels through the object store once per step and is read zero-copy by
every worker; `ParamLayout` turns it back into named views for `torch.func.functional_call`.
Names are kept sorted so the flat order, the checksum and `params_sha256` never depend on how a
module registered its parameters.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

STATE_PREFIX = "meta.state."
"""Meta-parameters that hold running state, not weights: the outer step replaces them by the step's mean
update (an algorithm returns their new values) instead of optimizing them (runtime/server.py)."""


@dataclass(frozen=True)
class ParamLayout:
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @staticmethod
    def of(params: dict[str, torch.Tensor]) -> "ParamLayout":
        names = tuple(sorted(params))
        return ParamLayout(names, tuple(tuple(params[n].shape) for n in names))

    @property
    def numels(self) -> tuple[int, ...]:
        out = []
        for shape in self.shapes:
            n = 1
            for d in shape:
                n *= d
            out.append(n)
        return tuple(out)

    @property
    def size(self) -> int:
        return sum(self.numels)

    def flatten(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([tensors[n].reshape(-1) for n in self.names])

    def mask(self, prefix: str) -> torch.Tensor:
        """A boolean mask over the flat vector: the entries of parameters whose names start with `prefix`."""
        return torch.cat([torch.full((n,), name.startswith(prefix)) for name, n in zip(self.names, self.numels)])

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views into `flat` (no copy), one per parameter name."""
        pieces = torch.split(flat, self.numels)
        return {n: p.view(s) for n, p, s in zip(self.names, pieces, self.shapes)}


def params_sha256(params: dict[str, torch.Tensor]) -> str:
    """sha256 over the tensors' bytes (float32, C order) in parameter-name order: a bitwise fingerprint."""
    h = hashlib.sha256()
    for name in sorted(params):
        t = params[name].detach().to("cpu", torch.float32).contiguous()
        h.update(t.numpy().tobytes())
    return h.hexdigest()
