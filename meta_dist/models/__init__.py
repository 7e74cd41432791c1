"""Networks: plain single-device nn.Modules; distribution is applied from outside (runtime/).

Every network, built-in or the user's, comes from a factory called as
`factory(input_shape, output_dim, **kwargs) -> nn.Module`; `output_dim` 0 asks for an embedding network
(no output head), which the metric-based methods train. `ModelFactory` binds a factory to its keyword
arguments, so a run's network travels to the workers as one small picklable value, and builds it with
a seed without touching the global random state.

Batch norm layers that keep running statistics (torchvision's default) are built without them: each
task normalizes with its own batch statistics, as MAML's reference code does. A running average
across tasks would mix the tasks of a meta-batch, depend on which worker saw which chunk, and make a
network's forward impure (and so impossible to vectorize over tasks).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from meta_dist.config import Config
from meta_dist.errors import UserError
from meta_dist.tasks.spec import TaskFamily


@dataclass(frozen=True)
class ModelFactory:
    fn: Callable[..., nn.Module]
    """Called as fn(input_shape, output_dim, **kwargs)."""
    kwargs: dict = field(default_factory=dict)
    label: str = ""
    """How the config names it (a built-in name or an import path), for messages."""

    def __call__(self, input_shape: tuple[int, ...], output_dim: int, seed: int | None = None) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            model = self.fn(tuple(input_shape), int(output_dim), **self.kwargs)
        if not isinstance(model, nn.Module):
            raise UserError(f"model factory {self.label!r} returned {type(model).__name__}, not a torch "
                            f"nn.Module; return the network it builds")
        return without_running_stats(model)


def without_running_stats(model: nn.Module) -> nn.Module:
    """Batch norm with batch statistics in train and eval mode alike (see the module docstring)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            module.track_running_stats = False
            module.running_mean = module.running_var = module.num_batches_tracked = None
    return model


# -- built-in factories: the same calling convention as a user's (named build_* so that importing a
# submodule such as models.mlp does not shadow them) --------------------------------------------
def build_mlp(input_shape, output_dim, hidden_sizes=(40, 40), activation="relu"):
    from meta_dist.models.mlp import MLP
    return MLP(input_shape[0], tuple(hidden_sizes), output_dim, activation)


def build_conv4(input_shape, output_dim, channels=64, strided=False):
    from meta_dist.models.conv4 import Conv4
    return Conv4(input_shape, channels, output_dim, strided=strided)


def build_resnet12(input_shape, output_dim, **kwargs):
    from meta_dist.models.resnet12 import resnet12
    return resnet12(input_shape, output_dim, **kwargs)


def build_gaussian_policy(input_shape, output_dim, hidden_sizes=(100, 100), activation="tanh", init_log_std=0.0):
    from meta_dist.models.policies import GaussianMLPPolicy
    return GaussianMLPPolicy(input_shape[0], output_dim, tuple(hidden_sizes), activation, init_log_std)


def build_gru_policy(input_shape, output_dim, hidden_size=128, gaussian=False, init_log_std=0.0):
    from meta_dist.models.policies import GaussianGRUPolicy, GRUPolicy
    if gaussian:
        return GaussianGRUPolicy(input_shape[0], output_dim, hidden_size, init_log_std)
    return GRUPolicy(input_shape[0], output_dim, hidden_size)


def _builtin(config: Config, family: TaskFamily) -> ModelFactory:
    m = config.model
    if m.name == "mlp":
        return ModelFactory(build_mlp, {"hidden_sizes": tuple(m.hidden_sizes), "activation": m.activation}, m.name)
    if m.name in ("conv4", "conv4_strided"):
        return ModelFactory(build_conv4, {"channels": m.channels, "strided": m.name == "conv4_strided"}, m.name)
    if m.name == "resnet12":
        return ModelFactory(build_resnet12, dict(m.kwargs), m.name)
    discrete = getattr(family, "discrete", False)
    if m.name == "policy_mlp":
        if discrete:
            raise UserError(f"model policy_mlp is a Gaussian policy; task '{family.name}' has discrete actions "
                            f"(use model.name=policy_gru)")
        return ModelFactory(build_gaussian_policy, {"hidden_sizes": tuple(m.hidden_sizes), "activation": m.activation,
                                              "init_log_std": config.rl.init_log_std}, m.name)
    kwargs = {"hidden_size": int(m.hidden_sizes[0]) if m.hidden_sizes else 128}
    if not discrete:  # a Gaussian head for continuous actions
        kwargs.update(gaussian=True, init_log_std=config.rl.init_log_std)
    return ModelFactory(build_gru_policy, kwargs, m.name)


def factory(config: Config, family: TaskFamily) -> ModelFactory:
    """The configured network's factory: a built-in, a plug-in's, or an imported one with `model.kwargs`."""
    from meta_dist import registry

    name = config.model.name
    if registry.is_builtin("model", name):
        return _builtin(config, family)
    fn = registry.load("model", name)
    if not callable(fn):
        raise UserError(f"config key 'model.name' names {name!r}, which is a {type(fn).__name__}, not a "
                        f"factory; name a function or class called as factory(input_shape, output_dim, **kwargs)")
    return ModelFactory(fn, dict(config.model.kwargs), name)


def build(config: Config, family: TaskFamily, seed: int | None = None, out_features: int | None = None) -> nn.Module:
    """Build the configured network; with `seed`, its initial parameters are seeded deterministically.

    `out_features` overrides the family's output size; 0 means no output head (an embedding network).
    """
    out = family.output_dim if out_features is None else out_features
    return factory(config, family)(family.input_shape, out, seed)
