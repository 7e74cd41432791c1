"""meta-dist as a library: train, evaluate, load and adapt from Python.

`train` is the same run as `meta-dist train` (run directory, checkpoints, resume, metrics, final
evaluation), except that the network and the task family may be Python objects rather than names:
a model factory `factory(input_shape, output_dim, **kwargs) -> nn.Module` and a `TaskFamily` instance,
class or function. They are recorded in the run's config.yaml by import path ("module:attr"); an
object that its import path cannot rebuild (an instance, a lambda) is noted in run.json, and later
calls on the run must pass it again. `load` returns the meta-trained network, `adapt` a `Predictor`
fitted to one new task's support set, for every algorithm family: gradient steps for MAML-like
methods, the support set as prototypes / memory for the metric-based ones.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from meta_dist import checkpoint, config as config_mod, registry
from meta_dist.components import Components, build as build_components
from meta_dist.config import Config
from meta_dist.errors import UserError
from meta_dist.models import ModelFactory
from meta_dist.tasks.spec import TaskFamily


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    eval: dict
    """The final evaluation, as in the run's eval.json."""
    config: Config

    @property
    def params_sha256(self) -> str:
        return self.eval["params_sha256"]


def resolve_config(config: str | Config | dict | None, overrides=None) -> Config:
    """A Config from a name, a YAML path, a Config or a dict, with `overrides` applied: `KEY=VALUE` strings
    or a {key: value} mapping."""
    if isinstance(config, Config):
        base = config
    elif isinstance(config, dict):
        base = config_mod.from_dict(config)
    elif config is None or isinstance(config, str):
        base = config_mod.load(config)
    else:
        raise UserError(f"config must be a config name, a YAML path, a Config or a dict, got {type(config).__name__}")
    return config_mod.apply_overrides(base, _override_strings(overrides))


def _override_strings(overrides) -> list[str]:
    if overrides is None:
        return []
    if isinstance(overrides, dict):
        return [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in overrides.items()]
    if isinstance(overrides, str):
        raise UserError("overrides must be a list of 'KEY=VALUE' strings or a mapping, not one string")
    return list(overrides)


def _named(config: Config, *, model: object, task: object) -> Config:
    """The config with `model` / `task` named: a string is a name, an object its import path."""
    model_cfg, task_cfg = config.model, config.task
    if model is not None:
        fn = model.fn if isinstance(model, ModelFactory) else model
        model_cfg = replace(model_cfg, name=model if isinstance(model, str) else registry.import_path_of(fn))
    if task is not None:
        task_cfg = replace(task_cfg, name=task if isinstance(task, str) else registry.import_path_of(task))
        if isinstance(task, TaskFamily):  # an instance carries its own constructor arguments
            task_cfg = replace(task_cfg, kwargs={})
    return replace(config, model=model_cfg, task=task_cfg)


def train(config: str | Config | dict | None = None, *, model: object = None, task: object = None,
          run_dir: str | Path | None = None, workers: int | None = None, steps: int | None = None,
          seed: int | None = None, address: str | None = None, data: str | None = None,
          time_budget_s: float | None = None, overrides=None, backend: str | None = None,
          resume: bool = False, tensorboard: bool | None = None, mlflow: bool | None = None) -> RunResult:
    """Meta-train as `meta-dist train` does and return the run directory and its final evaluation.

    `config`: a config name, a YAML path, a Config or a dict (default: MAML on sinusoid).
    `model`: a model factory or import path; `task`: a TaskFamily instance, class, function or import
    path; both replace what the config names. `overrides`: `KEY=VALUE` strings or a mapping.
    `backend`: "ray" (default) or "local" (one process). `resume`: continue the run in `run_dir`.
    `tensorboard` / `mlflow`: switch those loggers on (or off) as `logging.tensorboard` / `logging.mlflow`.
    """
    from meta_dist.runtime.driver import Trainer, load_run_config

    options = config_mod.run_overrides(workers=workers, steps=steps, seed=seed, address=address, data=data,
                                       time_budget_s=time_budget_s, backend=backend, tensorboard=tensorboard,
                                       mlflow=mlflow)
    if resume:
        if run_dir is None:
            raise UserError("resume=True needs the run_dir of the run to continue")
        cfg = config_mod.apply_overrides(load_run_config(Path(run_dir)), _override_strings(overrides) + options)
    else:
        cfg = config_mod.apply_overrides(resolve_config(config, overrides), options)
    cfg = config_mod.validate(_named(cfg, model=model, task=task))
    components = build_components(cfg, data, task=None if isinstance(task, str) else task,
                                  model=None if isinstance(model, str) else model)
    path = Path(run_dir) if run_dir is not None else Path("runs") / cfg.name
    if resume:
        check_objects(path, components.given, model=model, task=task)
    result = Trainer(cfg, path, data_dir=data, resume=resume, components=components).run()
    return RunResult(path, result, cfg)


# -- a finished run ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """A run directory opened for use: its config, components and newest valid checkpoint."""
    run_dir: Path
    config: Config
    components: Components
    checkpoint: checkpoint.Checkpoint

    def algorithm(self, device: torch.device | str = "cpu"):
        return self.components.algorithm(self.config, device)


def check_objects(run_dir: Path, given: tuple[str, ...] = (), *, model: object = None, task: object = None) -> None:
    """A run trained with Python objects that its config cannot rebuild needs them passed again."""
    meta = Path(run_dir) / "run.json"
    recorded = json.loads(meta.read_text()).get("objects", []) if meta.is_file() else []
    for kind, obj in (("task", task), ("model", model)):
        if kind in recorded and obj is None:
            raise UserError(f"{run_dir} was trained with a {kind} object given to meta_dist.train, which its "
                            f"config.yaml cannot rebuild; pass the same object again ({kind}=...) from Python")


def open_run(run_dir: str | Path, *, data: str | None = None, model: object = None, task: object = None) -> Run:
    from meta_dist.runtime.driver import load_run_config

    path = Path(run_dir)
    config = load_run_config(path)
    check_objects(path, model=model, task=task)
    ckpt = checkpoint.load_latest(path)
    if ckpt is None:
        raise UserError(f"{path} holds no checkpoint; train first (or pass the run directory of a trained run)")
    components = build_components(config, data, task=task, model=model, check=False)
    return Run(path, config, components, ckpt)


def evaluate(run_dir: str | Path, *, data: str | None = None, tasks: int | None = None, ways: int | None = None,
             shots: int | None = None, split: str | None = None, model: object = None, task: object = None,
             workers: int | None = None, backend: str | None = None) -> dict:
    """Evaluate a run's newest checkpoint on held-out tasks; the same dict as `meta-dist eval --json`.
    `workers` / `backend` spread the episodes over Ray workers as `meta-dist eval --workers/--backend`
    do, with the same result."""
    from meta_dist.evaluation import evaluate as evaluate_params
    from meta_dist.runtime.eval_pool import check_eval_workers, eval_workers

    check_eval_workers(workers, backend)
    run = open_run(run_dir, data=data, model=model, task=task)
    for name, value in (("tasks", tasks), ("ways", ways), ("shots", shots)):
        if value is not None and value <= 0:
            raise UserError(f"{name} must be positive, got {value}")
    ckpt = run.checkpoint
    with eval_workers(run.config, ckpt.params, run.components, workers, backend) as pool:
        return evaluate_params(run.config, ckpt.params, step=ckpt.step, num_tasks=tasks, ways=ways, shots=shots,
                               split=split, components=run.components, pool=pool)


def load(run_dir: str | Path, *, data: str | None = None, model: object = None, task: object = None) -> nn.Module:
    """The meta-trained network of a run (eval mode), its meta-learned parameters loaded. Metric-based
    methods return their embedding network; Meta-SGD's learned step sizes are not part of it (`adapt`
    uses them)."""
    run = open_run(run_dir, data=data, model=model, task=task)
    net = run.algorithm().model
    weights = {k: v for k, v in run.checkpoint.params.items() if not k.startswith("meta.")}
    missing, unexpected = net.load_state_dict(weights, strict=False)
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    if unexpected or trainable & set(missing):
        raise UserError(f"the checkpoint of {run_dir} does not fit the network its config builds (missing "
                        f"{sorted(trainable & set(missing))[:3]}, unexpected {unexpected[:3]}); pass the model "
                        f"factory the run was trained with")
    return net.eval()


class Predictor:
    """A meta-trained network adapted to one new task: `predictor(query_x)` gives its outputs (class
    scores, or regression values), `predictor.predict(query_x)` the predicted labels."""

    def __init__(self, scores, metric: str, ways: int):
        self._scores, self.metric, self.ways = scores, metric, ways

    def __call__(self, query_x: torch.Tensor) -> torch.Tensor:
        return self._scores(query_x)

    def predict(self, query_x: torch.Tensor) -> torch.Tensor:
        out = self(query_x)
        return out.argmax(-1) if self.metric == "accuracy" else out


def adapt(run_dir: str | Path | Run, support_x: torch.Tensor, support_y: torch.Tensor, *, steps: int | None = None,
          inner_lr: float | None = None, data: str | None = None, model: object = None,
          task: object = None) -> Predictor:
    """Adapt a run's meta-trained network to a new task's support set (support_x [N, ...] as the
    family's inputs, support_y [N] labels 0..ways-1 or regression targets). `steps` adaptation steps
    (default: the run's eval.inner_steps) at `inner_lr` (default: eval.inner_lr, else the training one)."""
    run = run_dir if isinstance(run_dir, Run) else open_run(run_dir, data=data, model=model, task=task)
    algorithm = run.algorithm()
    algorithm.model.eval()
    family = run.components.family
    ways = int(support_y.max()) + 1 if family.metric == "accuracy" else 0
    if family.metric == "accuracy" and algorithm.has_output_head and ways != family.output_dim:
        raise UserError(f"{run.config.algorithm.name} learned a {family.output_dim}-way output layer; the support "
                        f"set has {ways} classes: give it {family.output_dim} (metric methods take any number)")
    e = run.config.eval
    lr = inner_lr if inner_lr is not None else e.inner_lr
    scores = algorithm.predictor(run.checkpoint.params, support_x, support_y,
                                 e.inner_steps if steps is None else steps, lr)
    return Predictor(scores, family.metric, ways)


__all__ = ["RunResult", "Run", "Predictor", "train", "evaluate", "load", "adapt", "open_run", "resolve_config"]
