"""The typed configuration tree: frozen dataclasses, strict YAML, `--set` overrides, validation.

One `Config` describes a run from laptop to cluster. Loading is strict on purpose: an unknown key
is rejected by name with the valid keys listed, a value of the wrong type is rejected with the
expected type, and `validate()` checks ranges. All of these raise `UserError` (exit code 2).
"""
from __future__ import annotations

import logging
import typing
from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from meta_dist.errors import UserError
from meta_dist.schema import (NON_NEGATIVE, POSITIVE, CHOICES, AlgorithmConfig, CheckpointConfig, Config,  # noqa: F401
                              EvalConfig, LoggingConfig, ModelConfig, RLConfig, RuntimeConfig, TaskConfig)

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
"""The named configs shipped with the package (jobs/configs in a source checkout links here)."""


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


REMOVED = {"log_every": "progress prints every 10 s (twice a second on a terminal)"}
"""Keys of earlier versions that configs may still hold: ignored with a warning, so those configs still load."""


def _build(cls, data: dict, prefix: str = ""):
    types_ = _field_types(cls)
    if not prefix:
        for key in sorted(set(data) & set(REMOVED)):
            logging.getLogger("meta_dist").warning("config key '%s' is no longer used (%s); delete it", key,
                                                   REMOVED[key])
        data = {k: v for k, v in data.items() if k not in REMOVED}
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
    from meta_dist.tasks.names import IMAGE_TASKS

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
    if (t.within_alphabet or config.eval.within_alphabet) and t.name not in IMAGE_TASKS:
        key = "task.within_alphabet" if t.within_alphabet else "eval.within_alphabet"
        raise UserError(f"{key} applies to image task stores (task.name: {' | '.join(IMAGE_TASKS)}), "
                        f"not to task '{t.name}'; remove it")
    if t.episodes == "meta_dataset":
        _check_meta_dataset(config, IMAGE_TASKS)
    if config.algorithm.meta_lr_schedule == "step" and config.algorithm.meta_lr_decay_every <= 0:
        raise UserError("algorithm.meta_lr_schedule 'step' needs algorithm.meta_lr_decay_every > 0")
    if config.eval.inner_steps > config.eval.max_inner_steps:
        raise UserError(f"eval.inner_steps ({config.eval.inner_steps}) must be <= eval.max_inner_steps "
                        f"({config.eval.max_inner_steps})")
    r = config.runtime
    if r.stall_timeout_s <= r.chunk_timeout_s:
        raise UserError(f"runtime.stall_timeout_s ({r.stall_timeout_s:g}) must exceed runtime.chunk_timeout_s "
                        f"({r.chunk_timeout_s:g}), which a healthy chunk may take")
    if r.num_gpu_workers and r.num_gpus_per_worker <= 0:
        raise UserError("runtime.num_gpu_workers > 0 needs runtime.num_gpus_per_worker > 0 (e.g. 0.25)")
    if r.num_workers and r.num_gpu_workers > r.num_workers:
        raise UserError(f"runtime.num_gpu_workers ({r.num_gpu_workers}) exceeds runtime.num_workers ({r.num_workers})")
    return config


def _check_meta_dataset(config: Config, image_tasks: tuple[str, ...]) -> None:
    from meta_dist.tasks.meta_dataset import MIN_WAYS

    if config.task.name not in image_tasks:
        raise UserError(f"task.episodes meta_dataset draws image episodes; task.name must be one of "
                        f"{' | '.join(image_tasks)}, not '{config.task.name}'")
    if config.runtime.chunk_size != 1:
        raise UserError(f"Meta-Dataset episodes differ in shape, so each is its own chunk: set "
                        f"runtime.chunk_size=1 (it is {config.runtime.chunk_size})")
    if config.task.within_alphabet or config.eval.within_alphabet:
        raise UserError("within-alphabet episodes are fixed N-way episodes; Meta-Dataset episodes (task.episodes "
                        "meta_dataset) draw their classes from the whole split: drop within_alphabet")
    if config.task.max_ways < MIN_WAYS:
        raise UserError(f"task.max_ways must be at least {MIN_WAYS} for Meta-Dataset episodes, got {config.task.max_ways}")


def with_overrides(config: Config, **sections) -> Config:
    """`with_overrides(cfg, steps=5, runtime={'backend': 'local'})`: a copy with fields replaced."""
    changes = {}
    for key, value in sections.items():
        if isinstance(value, dict):
            changes[key] = replace(getattr(config, key), **value)
        else:
            changes[key] = value
    return replace(config, **changes)


def linear_anneal(value: float, step: int, steps: int) -> float:
    """`value` decayed linearly from (1-based) meta-step 1 to 0 after the run's last step `steps`."""
    return value * max(0.0, 1.0 - (step - 1) / steps)


def dump(config: Config) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


__all__ = ["Config", "TaskConfig", "ModelConfig", "AlgorithmConfig", "RuntimeConfig", "CheckpointConfig",
           "EvalConfig", "RLConfig", "LoggingConfig", "load", "from_dict", "to_dict", "validate", "apply_overrides",
           "with_overrides", "dump", "resolve_config_path", "available_configs"]
