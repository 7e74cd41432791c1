"""What a run is made of: its task family and its network factory, as objects.

The driver builds them once (from config names, or from the objects a Python caller passes) and
every worker receives the same objects: Ray pickles actor arguments by value, so a worker never
re-derives anything from config strings and a family defined in a user's script arrives intact.
Components made of user code are checked on the driver before any worker starts: specs must be
deterministic in their arguments, batches must have the family's shapes, the network's output must
fit the family, and the forward pass must leave the network's buffers alone. Each failed check is a
one-line `UserError` naming the user's object and the fix; an exception inside the user's code is
theirs and keeps its traceback.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass, field

import torch

from meta_dist import algorithms, models, registry, tasks
from meta_dist.config import Config
from meta_dist.errors import UserError
from meta_dist.tasks.spec import RL_METRICS, TaskBatch, TaskFamily

METRICS = ("accuracy", "mse", *RL_METRICS)


@dataclass(frozen=True)
class Components:
    family: TaskFamily
    model: models.ModelFactory
    code_dir: str | None = None
    """The folder holding user code that Ray workers must import (shipped as their working_dir)."""
    user: tuple[str, ...] = field(default=())
    """Which of "task", "model", "algorithm" come from the user rather than meta-dist."""
    given: tuple[str, ...] = field(default=())
    """Which of "task", "model" were Python objects that the config's names cannot rebuild (an instance,
    a lambda, a closure): evaluating the run later needs the same objects again."""

    def algorithm(self, config: Config, device: torch.device | str = "cpu") -> algorithms.MetaAlgorithm:
        return algorithms.build(config, self.family, device, self.model)


def build(config: Config, data_dir: str | None = None, *, task: object = None, model: object = None,
          check: bool = True) -> Components:
    """The run's components. `task` (a TaskFamily instance, class or function) and `model` (a factory or
    ModelFactory) replace what the config names; user components are checked unless `check` is False."""
    if task is not None:
        family = tasks.construct(task, config.task.kwargs, config.task.name, data_dir or config.task.data_dir)
    else:
        family = tasks.build(config, data_dir)
    factory = _factory(config, family, model)
    user = tuple(kind for kind, name in (("task", config.task.name), ("model", config.model.name),
                                         ("algorithm", config.algorithm.name))
                 if not registry.is_builtin(kind, name))
    objects = {"task": family, "model": factory.fn}
    if "algorithm" in user:
        objects["algorithm"] = algorithms.algorithm_class(config.algorithm.name)
    code_dir = registry.code_dir([objects[kind] for kind in user])
    given = tuple(kind for kind, obj in (("task", task), ("model", model))
                  if obj is not None and not _rebuildable(kind, obj, config))
    components = Components(family, factory, str(code_dir) if code_dir else None, user, given)
    if check and user:
        check_components(config, components)
    return components


def _rebuildable(kind: str, obj: object, config: Config) -> bool:
    """Whether the config's name for `obj` imports back to the very same object."""
    if isinstance(obj, models.ModelFactory):
        obj = obj.fn
    name = config.task.name if kind == "task" else config.model.name
    if name.startswith("__main__:"):  # a script's object: no later process can import it by name
        return False
    try:
        return registry.is_import_path(name) and registry.load(kind, name) is obj
    except UserError:
        return False


def _factory(config: Config, family: TaskFamily, model: object) -> models.ModelFactory:
    if model is None:
        return models.factory(config, family)
    if isinstance(model, models.ModelFactory):
        return model
    if not callable(model):
        raise UserError(f"model must be a factory called as factory(input_shape, output_dim, **kwargs), "
                        f"got a {type(model).__name__}")
    return models.ModelFactory(model, dict(config.model.kwargs), config.model.name)


def check_components(config: Config, components: Components) -> None:
    """The checks of the module docstring, on two tasks of the first training step."""
    family = components.family
    label = config.task.name
    _check_family_attributes(family, label)
    first = family.specs(config.seed, "train", 1, 2)
    if first != family.specs(config.seed, "train", 1, 2):
        raise UserError(f"task {label!r}: spec() gave different tasks for the same (seed, split, step, index); "
                        f"derive every random choice from those arguments (e.g. meta_dist.tasks.spec.spec_rng)")
    try:
        if pickle.loads(pickle.dumps(first)) != first:
            raise UserError(f"task {label!r}: its specs do not survive pickling unchanged; keep them to numbers, "
                            f"strings and tuples (meta_dist.TaskSpec)")
    except (pickle.PicklingError, TypeError, AttributeError) as e:
        raise UserError(f"task {label!r}: its specs cannot be pickled ({e}); keep them to numbers, strings and "
                        f"tuples (meta_dist.TaskSpec)") from None
    algorithm = components.algorithm(config)
    if family.metric not in RL_METRICS:
        _check_batch(family, family.materialize(first), label)
        _check_output(algorithm, family, family.materialize(first[:1]), components.model.label)


def _check_family_attributes(family: TaskFamily, label: str) -> None:
    if not isinstance(getattr(family, "name", None), str):
        raise UserError(f"task {label!r}: set a `name` string attribute on the TaskFamily")
    if getattr(family, "metric", None) not in METRICS:
        raise UserError(f"task {label!r}: `metric` is {getattr(family, 'metric', None)!r}; set it to one of "
                        f"{', '.join(METRICS)}")


def _check_batch(family: TaskFamily, batch: object, label: str) -> None:
    if not isinstance(batch, TaskBatch):
        raise UserError(f"task {label!r}: materialize() returned a {type(batch).__name__}, not a meta_dist.TaskBatch")
    shape = tuple(family.input_shape)
    for name in ("support_x", "query_x"):
        x = getattr(batch, name)
        if x.dim() < 2 or x.shape[0] != 2 or tuple(x.shape[2:]) != shape:
            raise UserError(f"task {label!r}: materialize() of 2 specs gave {name} of shape {tuple(x.shape)}, "
                            f"expected [2, examples, {', '.join(map(str, shape))}] (input_shape {shape})")
    if family.metric == "accuracy":
        for name in ("support_y", "query_y"):
            y = getattr(batch, name)
            too_big = family.output_dim > 0 and int(y.max()) >= family.output_dim
            if y.dtype != torch.long or int(y.min()) < 0 or too_big:
                raise UserError(f"task {label!r}: {name} must hold int64 labels in 0..{family.output_dim - 1} "
                                f"(output_dim), got {y.dtype} in [{int(y.min())}, {int(y.max())}]")


def _check_output(algorithm, family: TaskFamily, batch: TaskBatch, label: str) -> None:
    """One forward of the network on a task's support set: output shape, and buffers left unchanged."""
    net = algorithm.model
    before = {k: v.clone() for k, v in net.named_buffers()}
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        out = net(batch.support_x[0].to(algorithm.device))
    n = batch.support_x.shape[1]
    want = algorithm.output_dim if algorithm.output_dim is not None else family.output_dim
    if want == 0:
        if out.dim() != 2 or out.shape[0] != n or out.shape[1] == 0:
            raise UserError(f"model {label!r} built with output_dim=0 returned shape {tuple(out.shape)} for {n} "
                            f"inputs; {algorithm.cfg.name} needs an embedding network: return [N, features] "
                            f"when output_dim is 0")
    elif tuple(out.shape) not in ((n, want),) and not (family.metric == "mse" and out.shape[:1] == (n,)):
        raise UserError(f"model {label!r} returned shape {tuple(out.shape)} for {n} inputs of task "
                        f"{family.name!r}; the family needs [N, {want}] (output_dim {want})")
    for k, v in net.named_buffers():
        if not torch.equal(before[k], v):
            raise UserError(f"model {label!r} changes its buffer {k!r} in forward(); workers run the network as a "
                            f"pure function of its parameters: keep buffers constant")


__all__ = ["Components", "build", "check_components"]
