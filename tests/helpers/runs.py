"""Small in-process training runs shared by integration and fault tests."""
from __future__ import annotations

from pathlib import Path

from meta_dist import checkpoint, config as C
from meta_dist.params import params_sha256
from meta_dist.runtime.driver import Trainer

FAST = ["steps=12", "checkpoint.every=4", "eval.num_tasks=20", "eval.max_inner_steps=1",
        "runtime.chunk_size=5", "runtime.placement_timeout_s=60"]


def small_config(*overrides: str) -> C.Config:
    return C.validate(C.load(None, [*FAST, *overrides]))


def train(run_dir: Path, *overrides: str, resume: bool = False) -> dict:
    return Trainer(small_config(*overrides), run_dir, resume=resume).run()


def final_digest(run_dir: Path) -> str:
    return params_sha256(checkpoint.load_latest(run_dir).params)
