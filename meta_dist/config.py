"""The typed configuration tree: frozen dataclasses, strict YAML, `--set` overrides, validation.

One `Config` describes a run from laptop to cluster. Loading is strict on purpose: an unknown key
is rejected by name with the valid keys listed, a value of the wrong type is rejected with the
expected type, and `validate()` checks ranges. All of these raise `UserError` (exit code 2).
"""
from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from meta_dist.errors import UserError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
"""The named configs shipped with the package (jobs/configs in a source checkout links here)."""


@dataclass(frozen=True)
class TaskConfig:
    name: str = "sinusoid"
    """Task family: a built-in name (sinusoid | images | omniglot | miniimagenet | cifarfs | navigation2d |
    bandits | cheetah_vel | cheetah_dir), a plug-in's entry-point name, or an import path
    "module.path:attr" naming a `meta_dist.TaskFamily` subclass (or a function returning one)."""
    kwargs: dict = field(default_factory=dict)
    """Constructor arguments of an imported task family: `attr(**kwargs)`."""
    ways: int = 5
    """Classes per episode (N-way); ignored by regression and RL tasks."""
    shots: int = 10
    """Support examples per class (K-shot); for regression the number of support points."""
    num_query: int = 10
    """Query examples per class; for regression the number of query points."""
    data_dir: str = ""
    """Task store directory (image tasks); overridden by `--data`."""
    split: str = "vinyals"
    """Omniglot class split recorded in the store: vinyals | random (informational check)."""
    augment_rotations: bool = True
    """Image tasks: apply the store's 0/90/180/270 rotation classes."""
    amplitude_min: float = 0.1
    """Sinusoid amplitude range lower bound (Finn et al. 2017: 0.1)."""
    amplitude_max: float = 5.0
    """Sinusoid amplitude range upper bound (Finn et al. 2017: 5.0)."""
    phase_max: float = 3.141592653589793
    """Sinusoid phase drawn from U[0, phase_max] (MAML: pi; Reptile: 2 pi)."""
    x_min: float = -5.0
    """Sinusoid input range lower bound."""
    x_max: float = 5.0
    """Sinusoid input range upper bound."""


@dataclass(frozen=True)
class ModelConfig:
    name: str = "mlp"
    """Network: a built-in name (mlp | conv4 | conv4_strided | resnet12 | policy_mlp | policy_gru), a plug-in's
    entry-point name, or an import path "module.path:attr" naming a factory called as
    `attr(input_shape, output_dim, **kwargs) -> nn.Module` (output_dim 0: an embedding network, no head)."""
    kwargs: dict = field(default_factory=dict)
    """Keyword arguments of the model factory (for resnet12: widths, dropout)."""
    hidden_sizes: tuple = (40, 40)
    """MLP hidden layer widths."""
    activation: str = "relu"
    """MLP activation: relu | tanh."""
    channels: int = 64
    """Conv-4 filters per layer."""


@dataclass(frozen=True)
class AlgorithmConfig:
    name: str = "maml"
    """maml | fomaml | reptile | metasgd | anil | protonet | matchingnet | siamese | maml_rl | rl2, a plug-in's
    entry-point name, or an import path "module.path:attr" naming a `MetaAlgorithm` subclass."""
    inner_lr: float = 0.01
    """Inner-loop (adaptation) step size alpha."""
    inner_steps: int = 1
    """Inner-loop steps during meta-training."""
    first_order: bool = False
    """MAML: drop second-order terms (first-order MAML). `fomaml` sets it."""
    inner_optimizer: str = "sgd"
    """Inner-loop optimizer: sgd | adam (Reptile on Omniglot uses Adam with beta1 = 0)."""
    inner_batch_size: int = 0
    """Reptile: minibatch size per inner step over the task's data (0 = full batch)."""
    meta_batch_size: int = 25
    """Tasks per meta-step."""
    meta_lr: float = 0.001
    """Outer-loop step size (Adam lr, or Reptile's outer step)."""
    meta_optimizer: str = "adam"
    """Outer optimizer: adam | sgd."""
    meta_lr_schedule: str = "constant"
    """constant | linear (anneal to 0 over the run) | step (halve every `meta_lr_decay_every` steps)."""
    meta_lr_decay_every: int = 0
    """Steps between halvings for the `step` schedule."""
    head: str = ""
    """ANIL: name of the module whose parameters adapt in the inner loop ('' = the network's last
    nn.Linear, e.g. `head` of the built-in networks)."""
    distance: str = "euclidean"
    """Metric methods: euclidean (squared) | cosine."""
    vmap: bool = True
    """Vectorize the inner loop over the tasks of a chunk with torch.func.vmap where possible."""


@dataclass(frozen=True)
class RuntimeConfig:
    backend: str = "ray"
    """ray | local (one process, no Ray; used by tests and debugging)."""
    num_workers: int = 0
    """Compute workers; 0 = one per CPU of the cluster. With `driver_worker` in effect, worker 0 is the
    driver process itself and the rest are actors."""
    driver_worker: bool = True
    """Synchronous mode on a local Ray that meta-dist starts, CPU workers only: the driver computes one
    worker's share of every step in-process while the actors compute theirs, and Ray gets one worker's
    CPUs fewer. Saves a Ray round trip per step (measured on 2 cores: 9.4 -> 6.1 ms per sinusoid step).
    Off when joining a cluster (the driver's node's CPUs belong to Ray there) and in async mode."""
    compiled_graph: bool = True
    """Synchronous mode, CPU workers: reach actors on the driver's node through a Ray Compiled Graph
    each (shared-memory channels; measured round trip 0.07 ms against 0.8 ms for an ordinary actor
    call). A fault on that path falls back to ordinary calls for the step; a worker whose chunk outlives
    `chunk_timeout_s` there is restarted."""
    threads_per_worker: int = 1
    """Intra-op threads per CPU worker (workers x threads never exceeds the cores)."""
    num_gpus_per_worker: float = 0.0
    """GPUs per worker; fractions share a GPU between actors."""
    num_gpu_workers: int = 0
    """How many of the workers are GPU workers (the rest use CPUs)."""
    chunk_size: int = 13
    """Tasks per chunk: the unit of dispatch and retry. Fixed, so results do not depend on worker count
    (13: the default meta-batch of 25 in two chunks, one per worker of a 2-core laptop)."""
    mode: str = "sync"
    """sync | async (bounded staleness, Stale Synchronous Parallel)."""
    staleness: int = 2
    """Async mode: largest accepted gap between an update's parameter version and the current one."""
    address: str = ""
    """Ray cluster address ('' = start a local single-node Ray; 'auto' or host:port to join one)."""
    chunk_timeout_s: float = 120.0
    """Re-dispatch a chunk (backup task) that has not returned after this long."""
    placement_timeout_s: float = 60.0
    """Fail with a clear error if no worker can be placed for this long."""
    max_bad_steps: int = 5
    """Abort after this many consecutive meta-steps whose updates were all non-finite."""


@dataclass(frozen=True)
class CheckpointConfig:
    every: int = 1000
    """Checkpoint every N meta-steps (and at the end, and on SIGTERM/SIGINT)."""
    keep: int = 3
    """Keep the newest k checkpoints."""


@dataclass(frozen=True)
class EvalConfig:
    num_tasks: int = 600
    """Held-out tasks (episodes) for the final evaluation."""
    inner_steps: int = 1
    """Adaptation steps whose result is the headline `mean` of eval.json."""
    max_inner_steps: int = 10
    """Also report the curve of the metric after 0..max_inner_steps adaptation steps."""
    inner_lr: float = 0.0
    """Adaptation step size at test; 0 = the training inner_lr."""
    num_query: int = 100
    """Regression: query points per test task (images: see query_per_class)."""
    query_per_class: int = 0
    """Images: query examples per class of each test episode (0 = task.num_query); e.g. ProtoNets train
    with 1 query per class and test with 15."""
    ways: int = 0
    """N-way of the test episodes (0 = task.ways); e.g. ProtoNets train 20-way and test 5-way."""
    shots: int = 0
    """K-shot of the test episodes (0 = task.shots)."""
    transductive_bn: bool = False
    """Batch norm uses support+query statistics (transductive) instead of support-only statistics."""
    split: str = "test"
    """Split to evaluate on: test | val."""


@dataclass(frozen=True)
class RLConfig:
    horizon: int = 100
    """Steps per episode."""
    num_episodes: int = 20
    """Episodes (trajectories) per inner update / per trial."""
    discount: float = 0.99
    """Reward discount gamma."""
    gae_lambda: float = 1.0
    """GAE lambda."""
    clip: float = 0.2
    """PPO clipping epsilon."""
    entropy_coef: float = 0.0
    """Entropy bonus weight."""
    value_coef: float = 0.5
    """RL^2: weight of the value-head (critic) loss next to the policy loss."""
    num_trials: int = 1
    """RL^2: trials sampled per task per meta-step (each trial is one fresh run of the recurrent policy)."""
    init_log_std: float = 0.0
    """Gaussian policies: initial state-independent log standard deviation (0 = std 1, as rllab)."""
    num_arms: int = 5
    """Bandits: arms k, success probabilities p_i ~ U[0, 1]."""
    num_pulls: int = 10
    """Bandits: pulls n per trial (a trial is n one-step episodes)."""


@dataclass(frozen=True)
class LoggingConfig:
    tensorboard: bool = False
    """TensorBoard event files under <run dir>/tensorboard: every metrics row (tags train/KEY, the values of
    metrics.parquet), the final evaluation (eval/METRIC) and its adaptation curve (run eval_step<N>). Needs
    the `tracking` extra."""
    mlflow: bool = False
    """An MLflow run in MLFLOW_TRACKING_URI (default: MLflow's own local store in the working directory): the
    resolved config as params, every metrics row, the final evaluation, and eval.json, curve.png and
    config.yaml as artifacts. Needs the `tracking` extra."""
    mlflow_experiment: str = "meta-dist"
    """MLflow experiment the run is logged to (created if missing)."""


@dataclass(frozen=True)
class Config:
    name: str = "sinusoid_maml"
    """A label for the run."""
    seed: int = 0
    """Run seed: task specs derive from (seed, step, index), so the same seed gives the same run."""
    steps: int = 20000
    """Meta-steps to train."""
    time_budget_s: float = 0.0
    """Stop meta-training after this many seconds (0 = no limit), then checkpoint and evaluate."""
    log_every: int = 100
    """Progress/metrics print interval in steps."""
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


# task.name, model.name and algorithm.name are open sets (built-ins, plug-ins, import paths): the
# registry checks them.
CHOICES = {
    "task.split": ("vinyals", "random"),
    "model.activation": ("relu", "tanh"),
    "algorithm.inner_optimizer": ("sgd", "adam"),
    "algorithm.meta_optimizer": ("adam", "sgd"),
    "algorithm.meta_lr_schedule": ("constant", "linear", "step"),
    "algorithm.distance": ("euclidean", "cosine"),
    "runtime.backend": ("ray", "local"),
    "runtime.mode": ("sync", "async"),
    "eval.split": ("test", "val"),
}

POSITIVE = ("steps", "log_every", "task.ways", "task.shots", "task.num_query", "algorithm.inner_steps",
            "algorithm.meta_batch_size", "runtime.threads_per_worker", "runtime.chunk_size",
            "checkpoint.every", "checkpoint.keep", "eval.num_tasks", "eval.num_query",
            "rl.horizon", "rl.num_episodes", "runtime.max_bad_steps", "rl.num_trials", "rl.num_arms",
            "rl.num_pulls")
NON_NEGATIVE = ("seed", "time_budget_s", "runtime.num_workers", "runtime.num_gpus_per_worker",
                "runtime.num_gpu_workers", "runtime.staleness", "algorithm.inner_lr", "algorithm.meta_lr",
                "algorithm.inner_batch_size", "algorithm.meta_lr_decay_every", "eval.inner_steps",
                "eval.max_inner_steps", "eval.ways", "eval.shots", "eval.query_per_class", "eval.inner_lr",
                "runtime.chunk_timeout_s", "runtime.placement_timeout_s", "rl.entropy_coef", "rl.value_coef")


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def _coerce(path: str, value: Any, typ: Any) -> Any:
    """Check `value` against a field type; ints are accepted for floats, lists for tuples."""
    if is_dataclass(typ):
        if not isinstance(value, dict):
            raise UserError(f"config key '{path}' must be a mapping of its sub-keys, got {value!r}")
        return _build(typ, value, path + ".")
    if typ is bool:
        if not isinstance(value, bool):
            raise UserError(f"config key '{path}' must be true or false, got {value!r}")
        return value
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"config key '{path}' must be an integer, got {value!r}")
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"config key '{path}' must be a number, got {value!r}")
        return float(value)
    if typ is str:
        if not isinstance(value, str):
            raise UserError(f"config key '{path}' must be a string, got {value!r}")
        return value
    if typ is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise UserError(f"config key '{path}' must be a mapping of argument names to values, got {value!r}")
        return dict(value)
    if typ is tuple or typing.get_origin(typ) is tuple:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise UserError(f"config key '{path}' must be a list of integers, got {value!r}")
        return tuple(value)
    raise AssertionError(f"unsupported config type {typ} at {path}")


def _build(cls, data: dict, prefix: str = ""):
    types_ = _field_types(cls)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        where = f"section '{prefix[:-1]}'" if prefix else "the top level"
        raise UserError(f"unknown config key '{prefix}{unknown[0]}' in {where}; valid keys: "
                        f"{', '.join(sorted(types_))}")
    kwargs = {k: _coerce(prefix + k, v, types_[k]) for k, v in data.items()}
    return cls(**kwargs)


def from_dict(data: dict) -> Config:
    if not isinstance(data, dict):
        raise UserError("a config file must hold a YAML mapping of keys (e.g. 'steps: 100')")
    return _build(Config, data)


def to_dict(config: Config) -> dict:
    """Plain YAML-able data: sections and free mappings as dicts, tuples as lists."""
    def conv(v):
        if is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in fields(v)}
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return [conv(x) for x in v] if isinstance(v, (tuple, list)) else v
    return conv(config)


def resolve_config_path(name_or_path: str) -> Path:
    """A NAME resolves to jobs/configs/NAME.yaml; anything with a suffix or separator is a path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or "/" in name_or_path:
        if not p.is_file():
            raise UserError(f"config file '{name_or_path}' does not exist; pass a path to a YAML file "
                            f"or one of the names: {', '.join(available_configs())}")
        return p
    named = next((d / f"{name_or_path}.yaml" for d in config_dirs() if (d / f"{name_or_path}.yaml").is_file()),
                 CONFIG_DIR / f"{name_or_path}.yaml")
    if not named.is_file():
        raise UserError(f"no config named '{name_or_path}'; available: {', '.join(available_configs())}")
    return named


def config_dirs() -> list[Path]:
    """Where NAMEs resolve: ./jobs/configs (a job's working directory), then this checkout's."""
    return [Path.cwd() / "jobs" / "configs", CONFIG_DIR]


def available_configs() -> list[str]:
    return sorted({p.stem for d in config_dirs() for p in d.glob("*.yaml")})


def load_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"config file '{path}' is not valid YAML{where}; fix its syntax") from None
    return data if data is not None else {}


def load(name_or_path: str | None = None, overrides: list[str] = ()) -> Config:
    """Load a named or path config (or the built-in default), then apply `key=value` overrides."""
    data = load_yaml(resolve_config_path(name_or_path)) if name_or_path else {}
    config = from_dict(data)
    return apply_overrides(config, overrides)


def apply_overrides(config: Config, overrides: list[str]) -> Config:
    data = to_dict(config)
    for item in overrides:
        if "=" not in item:
            raise UserError(f"--set expects KEY=VALUE (e.g. --set algorithm.inner_lr=0.4), got '{item}'")
        key, raw = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                sections = ", ".join(k for k, v in to_dict(Config()).items() if isinstance(v, dict))
                raise UserError(f"unknown config key '{key}': '{part}' is not a config section; sections: {sections}")
            node = node[part]
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        if parts[-1] not in node:
            node[parts[-1]] = value  # let _build name the unknown key with the valid ones
        else:
            node[parts[-1]] = value if not isinstance(node[parts[-1]], str) or value is None else str(raw)
    return from_dict(data)


RUN_OPTIONS = {"steps": "steps", "workers": "runtime.num_workers", "seed": "seed", "address": "runtime.address",
               "time_budget_s": "time_budget_s", "backend": "runtime.backend", "data": "task.data_dir",
               "tensorboard": "logging.tensorboard", "mlflow": "logging.mlflow"}
"""The run options that `meta-dist train` flags and `meta_dist.train` keywords share, and their keys."""
RESUME_OPTIONS = ("steps", "workers", "address", "time_budget_s", "backend", "tensorboard", "mlflow")
"""The run options a resumed run may change (the seed and the task data are the run's own)."""


def run_overrides(**options) -> list[str]:
    """`key=value` overrides of the run options that are not None (see RUN_OPTIONS). A local `data` path
    is made absolute, so the run's config.yaml still finds the store from any directory."""
    data = options.get("data")
    if data and "://" not in str(data):
        options["data"] = str(Path(data).resolve())
    return [f"{RUN_OPTIONS[name]}={value}" for name, value in options.items() if value is not None]


def _get(config: Config, path: str):
    obj = config
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def validate(config: Config) -> Config:
    """Range and consistency checks; raises UserError naming the key and the fix."""
    from meta_dist import registry

    registry.check_names(config)
    for path, choices in CHOICES.items():
        if _get(config, path) not in choices:
            raise UserError(f"config key '{path}' is {_get(config, path)!r}; choose one of: {', '.join(choices)}")
    for path in POSITIVE:
        if _get(config, path) <= 0:
            raise UserError(f"config key '{path}' must be positive, got {_get(config, path)}")
    for path in NON_NEGATIVE:
        if _get(config, path) < 0:
            raise UserError(f"config key '{path}' must be >= 0, got {_get(config, path)}")
    t = config.task
    if t.amplitude_min > t.amplitude_max or t.x_min >= t.x_max:
        raise UserError("config keys task.amplitude_min/max and task.x_min/max must be increasing ranges")
    if config.algorithm.meta_lr_schedule == "step" and config.algorithm.meta_lr_decay_every <= 0:
        raise UserError("algorithm.meta_lr_schedule 'step' needs algorithm.meta_lr_decay_every > 0")
    if config.eval.inner_steps > config.eval.max_inner_steps:
        raise UserError(f"eval.inner_steps ({config.eval.inner_steps}) must be <= eval.max_inner_steps "
                        f"({config.eval.max_inner_steps})")
    r = config.runtime
    if r.num_gpu_workers and r.num_gpus_per_worker <= 0:
        raise UserError("runtime.num_gpu_workers > 0 needs runtime.num_gpus_per_worker > 0 (e.g. 0.25)")
    if r.num_workers and r.num_gpu_workers > r.num_workers:
        raise UserError(f"runtime.num_gpu_workers ({r.num_gpu_workers}) exceeds runtime.num_workers ({r.num_workers})")
    return config


def with_overrides(config: Config, **sections) -> Config:
    """`with_overrides(cfg, steps=5, runtime={'backend': 'local'})`: a copy with fields replaced."""
    changes = {}
    for key, value in sections.items():
        if isinstance(value, dict):
            changes[key] = replace(getattr(config, key), **value)
        else:
            changes[key] = value
    return replace(config, **changes)


def dump(config: Config) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


__all__ = ["Config", "TaskConfig", "ModelConfig", "AlgorithmConfig", "RuntimeConfig", "CheckpointConfig",
           "EvalConfig", "RLConfig", "LoggingConfig", "load", "from_dict", "to_dict", "validate", "apply_overrides",
           "with_overrides", "dump", "resolve_config_path", "available_configs"]
