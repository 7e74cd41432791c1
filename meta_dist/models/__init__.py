"""Networks: plain single-device nn.Modules; distribution is applied from outside (runtime/)."""
from __future__ import annotations

import torch
from torch import nn

from meta_dist.config import Config
from meta_dist.tasks.spec import TaskFamily


def build(config: Config, family: TaskFamily, seed: int | None = None, out_features: int | None = None) -> nn.Module:
    """Build the configured network; with `seed`, its initial parameters are seeded deterministically.

    `out_features` overrides the family's output size; 0 means no output head (an embedding network).
    """
    m = config.model
    out = family.output_dim if out_features is None else out_features
    if seed is not None:
        torch.manual_seed(seed)
    if m.name == "mlp":
        from meta_dist.models.mlp import MLP
        return MLP(family.input_shape[0], tuple(m.hidden_sizes), out, m.activation)
    if m.name in ("conv4", "conv4_strided"):
        from meta_dist.models.conv4 import Conv4
        return Conv4(family.input_shape, m.channels, out, strided=m.name == "conv4_strided")
    if m.name in ("policy_mlp", "policy_gru"):
        from meta_dist.models.policies import build_policy
        return build_policy(config, family)
    raise AssertionError(f"unvalidated model name {m.name}")
