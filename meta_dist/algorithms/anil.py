"""ANIL, Almost No Inner Loop (Raghu, Raghu, Bengio & Vinyals 2020, "Rapid Learning or Feature Reuse?
Towards Understanding the Effectiveness of MAML").

MAML in which only the output head adapts in the inner loop; the body is meta-learned through the
outer loop alone (its gradient still flows through the head's adaptation in the second-order case).
The paper reports accuracy on par with MAML at a fraction of the inner-loop cost. The head is
`algorithm.head`, by default the network's last nn.Linear (`head` in the built-in networks).
"""
from __future__ import annotations

from functools import cached_property

from torch import nn

from meta_dist.algorithms.maml import MAML
from meta_dist.errors import UserError


class ANIL(MAML):
    @cached_property
    def head_prefix(self) -> str:
        """`algorithm.head`, or the network's last nn.Linear: the module whose parameters adapt."""
        if self.cfg.head:
            return self.cfg.head + "."
        linears = [name for name, m in self.model.named_modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise UserError(f"ANIL adapts the network's last nn.Linear layer, and model "
                            f"{self.model_factory.label!r} has none; set algorithm.head to the name of the "
                            f"module that adapts")
        return linears[-1] + "."

    def adapted_names(self, params):
        names = [k for k in self.model_params(params) if k.startswith(self.head_prefix)]
        if not names:
            raise UserError(f"algorithm.head {self.head_prefix[:-1]!r} names no trainable parameters of model "
                            f"{self.model_factory.label!r}; name one of its modules, e.g. "
                            f"{sorted({k.rsplit('.', 1)[0] for k in self.model_params(params)})[-1]!r}")
        return names
