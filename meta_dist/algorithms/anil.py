"""ANIL, Almost No Inner Loop (Raghu, Raghu, Bengio & Vinyals 2020, "Rapid Learning or Feature Reuse?
Towards Understanding the Effectiveness of MAML").

MAML in which only the output head adapts in the inner loop; the body is meta-learned through the
outer loop alone (its gradient still flows through the head's adaptation in the second-order case).
The paper reports accuracy on par with MAML at a fraction of the inner-loop cost.
"""
from __future__ import annotations

from meta_dist.algorithms.maml import MAML

HEAD_PREFIX = "head."


class ANIL(MAML):
    def adapted_names(self, params):
        names = [k for k in self.model_params(params) if k.startswith(HEAD_PREFIX)]
        if not names:
            raise AssertionError(f"ANIL needs a model with a '{HEAD_PREFIX}*' output layer; got {sorted(params)}")
        return names
