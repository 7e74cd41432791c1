"""Task distributions (pure torch/pyarrow, never ray). `build(config)` picks one by `task.name`.

A built-in name, a plug-in's entry-point name, or an import path naming a `TaskFamily` subclass (or a
function returning a family), constructed as `attr(**task.kwargs)`; a constructor that takes a
`data_dir` argument gets `--data` when the kwargs do not set it.
"""
from __future__ import annotations

import inspect

from meta_dist.config import Config
from meta_dist.errors import UserError
from meta_dist.tasks.names import IMAGE_TASKS, METAWORLD_TASKS
from meta_dist.tasks.spec import TaskBatch, TaskFamily, TaskSpec, derive_seed



def _builtin(config: Config, data_dir: str | None) -> TaskFamily:
    name = config.task.name
    if name == "sinusoid":
        from meta_dist.tasks.sinusoid import SinusoidTasks
        return SinusoidTasks(config.task)
    if name in IMAGE_TASKS and config.task.episodes == "meta_dataset":
        from meta_dist.tasks.meta_dataset import MetaDatasetEpisodes
        return MetaDatasetEpisodes(config.task, data_dir or config.task.data_dir)
    if name in IMAGE_TASKS:
        from meta_dist.tasks.episodic import EpisodicTasks
        return EpisodicTasks(config.task, data_dir or config.task.data_dir)
    require_rl_extra(name)
    from meta_dist.tasks.rl import build_rl_family
    return build_rl_family(config)


def require_rl_extra(task_name: str) -> None:
    """The meta-RL families need gymnasium (and MuJoCo for half-cheetah), which `meta-dist[rl]` brings;
    Meta-World's need `metaworld`, which `meta-dist[metaworld]` brings."""
    import importlib.util

    extra = "metaworld" if task_name in METAWORLD_TASKS else "rl"
    needed = ["gymnasium"] + (["mujoco"] if task_name.startswith("cheetah") else []) + \
        (["metaworld"] if extra == "metaworld" else [])
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"task '{task_name}' needs {', '.join(missing)}, which meta-dist installs as an extra: "
                        f"pip install 'meta-dist[{extra}]'")


def construct(obj: object, kwargs: dict, label: str, data_dir: str | None = None) -> TaskFamily:
    """A family from what an import path or a caller names: an instance as is, a class or function
    called with `kwargs` (and `data_dir` where it takes one)."""
    if isinstance(obj, TaskFamily):
        if kwargs:
            raise UserError(f"task {label!r} is a TaskFamily instance, so task.kwargs cannot apply; name "
                            f"its class instead, or drop task.kwargs")
        return obj
    if not callable(obj):
        raise UserError(f"task {label!r} is a {type(obj).__name__}, not a meta_dist.TaskFamily subclass or "
                        f"a function returning one")
    kwargs = dict(kwargs)
    if data_dir and "data_dir" not in kwargs and _takes(obj, "data_dir"):
        kwargs["data_dir"] = data_dir
    family = obj(**kwargs)
    if not isinstance(family, TaskFamily):
        raise UserError(f"task {label!r} built a {type(family).__name__}, not a meta_dist.TaskFamily; "
                        f"subclass meta_dist.TaskFamily")
    return family


def _takes(fn, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def build(config: Config, data_dir: str | None = None) -> TaskFamily:
    from meta_dist import registry

    name = config.task.name
    if registry.is_builtin("task", name):
        return _builtin(config, data_dir)
    return construct(registry.load("task", name), config.task.kwargs, name, data_dir or config.task.data_dir)


__all__ = ["build", "construct", "IMAGE_TASKS", "TaskBatch", "TaskFamily", "TaskSpec", "derive_seed"]
