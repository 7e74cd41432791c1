"""Task distributions (pure torch/pyarrow, never ray). `build(config)` picks one by `task.name`."""
from __future__ import annotations

from meta_dist.config import Config
from meta_dist.tasks.spec import TaskBatch, TaskFamily, TaskSpec, derive_seed


def build(config: Config, data_dir: str | None = None) -> TaskFamily:
    name = config.task.name
    if name == "sinusoid":
        from meta_dist.tasks.sinusoid import SinusoidTasks
        return SinusoidTasks(config.task)
    if name in ("omniglot", "miniimagenet", "cifarfs"):
        from meta_dist.tasks.episodic import EpisodicTasks
        return EpisodicTasks(config.task, data_dir or config.task.data_dir)
    if name in ("navigation2d", "bandits", "cheetah_vel", "cheetah_dir"):
        from meta_dist.tasks.rl import build_rl_family
        return build_rl_family(config)
    raise AssertionError(f"unvalidated task name {name}")


__all__ = ["build", "TaskBatch", "TaskFamily", "TaskSpec", "derive_seed"]
