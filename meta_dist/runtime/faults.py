"""Scheduled fault injection for tests and drills: "kill worker 1 at step 3", never random sleeps.

A plan is JSON in the environment variable META_DIST_FAULTS, e.g.
  {"once_dir": "/tmp/x", "faults": [{"kind": "kill", "worker": 1, "step": 3},
                                    {"kind": "hang", "step": 5, "chunk": 0, "seconds": 30},
                                    {"kind": "nan", "step": 4, "chunk": 1},
                                    {"kind": "kill_driver", "step": 7}]}
The driver forwards it to worker actors through their runtime environment. Each fault fires at
most once per run (a marker file in `once_dir`), so a restarted worker or a re-dispatched chunk
does not fail again. Without the variable nothing is installed and workers pay nothing.
"""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import torch

ENV = "META_DIST_FAULTS"


class FaultPlan:
    def __init__(self, spec: dict):
        self.once_dir = Path(spec.get("once_dir", "/tmp/meta-dist-faults"))
        self.faults = list(spec.get("faults", []))

    @staticmethod
    def from_env() -> "FaultPlan | None":
        raw = os.environ.get(ENV)
        return FaultPlan(json.loads(raw)) if raw else None

    def _fire_once(self, index: int) -> bool:
        self.once_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.once_dir / f"fault-{index}", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        os.close(fd)
        return True

    def _matches(self, fault: dict, worker_id: int, chunk) -> bool:
        return (fault.get("step") == chunk.step
                and fault.get("worker", worker_id) == worker_id
                and fault.get("chunk", chunk.chunk_id) == chunk.chunk_id)

    def before_chunk(self, worker_id: int, chunk) -> None:
        for i, fault in enumerate(self.faults):
            if fault["kind"] in ("kill", "hang") and self._matches(fault, worker_id, chunk) and self._fire_once(i):
                if fault["kind"] == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                time.sleep(float(fault.get("seconds", 30)))

    def after_step(self, step: int) -> None:
        """Driver side: {"kind": "kill_driver", "step": N} SIGKILLs the driver after committing step N."""
        for i, fault in enumerate(self.faults):
            if fault["kind"] == "kill_driver" and fault["step"] == step and self._fire_once(i):
                os.kill(os.getpid(), signal.SIGKILL)

    def corrupt_update(self, worker_id: int, chunk, update: torch.Tensor) -> torch.Tensor:
        for fault in self.faults:  # deterministic: a NaN chunk is NaN wherever and whenever it runs
            if fault["kind"] == "nan" and self._matches(fault, worker_id, chunk):
                update = update.clone()
                update[0] = float("nan")
        return update
