"""Meta-SGD (Li, Zhou, Chen & Li 2017, "Meta-SGD: Learning to Learn Quickly for Few-Shot Learning").

MAML with a learned step size per parameter element: the meta-parameters gain `meta.lr.<name>`, one
tensor shaped like each network parameter and initialized to `algorithm.inner_lr`; the inner update
is theta_i - alpha_i * grad_i and the outer optimizer trains theta and alpha together. Only the
second-order path trains alpha (with first_order the query loss does not depend on it). At test the
learned rates are used; `eval.inner_lr` does not apply.
"""
from __future__ import annotations

import torch

from meta_dist.algorithms.maml import MAML

PREFIX = "meta.lr."


class MetaSGD(MAML):
    def init_params(self, seed: int) -> dict[str, torch.Tensor]:
        params = super().init_params(seed)
        params.update({PREFIX + k: torch.full_like(v, self.cfg.inner_lr) for k, v in list(params.items())})
        return params

    def inner_lrs(self, params, lr):
        return {k: params[PREFIX + k] for k in self.adapted_names(params)}
