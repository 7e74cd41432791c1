"""The in-process backend: the same worker and parameter-server classes as on Ray, called directly.

It runs a run's chunks in this process (`--backend local`: tests, debugging, a laptop without Ray) and
exposes the operations `RayBackend` gives the driver (backend.py), so the driver does not know which
one it holds.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from meta_dist.components import Components
from meta_dist.config import Config
from meta_dist.runtime.node_fold import Partial, fold
from meta_dist.runtime.server import ParameterServer
from meta_dist.runtime.wire import Chunk, ChunkResult
from meta_dist.runtime.worker import ChunkWorker


class LocalBackend:
    """Everything in one process: the same worker and server classes, called directly."""

    def __init__(self, config: Config, init_params: dict, components: Components):
        import torch

        self._threads = torch.get_num_threads()  # ChunkWorker pins this process's; restored at shutdown
        self.worker = ChunkWorker(config, components, 0)
        self.server = ParameterServer(config, init_params)
        self.num_workers = 1
        self._handle = self.server.params()

    def params_handle(self) -> Any:
        return self._handle

    def run_chunks(self, handle: Any, chunks: list[Chunk]) -> list[ChunkResult]:
        return self.worker.run_chunks(handle, chunks)

    def run_step(self, handle: Any, chunks: list[Chunk]) -> Partial:
        return fold(None, self.run_chunks(handle, chunks))

    def apply(self, mean_update: np.ndarray, step: int) -> Any:
        self._handle = self.server.apply(mean_update, step)
        return self._handle

    def state(self) -> dict:
        return self.server.state_dict()

    def load_state(self, state: dict) -> None:
        self.server.load_state_dict(state)
        self._handle = self.server.params()

    def shutdown(self) -> None:
        import torch

        torch.set_num_threads(self._threads)

    # -- asynchronous-mode primitives (one worker: a dispatched chunk completes immediately) ------
    @property
    def version(self) -> int:
        return self.server.version

    def live_workers(self) -> list[int]:
        return [0]

    def dispatch(self, index: int, handle: Any, chunks: list[Chunk]) -> None:
        self._done = (index, chunks, self.worker.run_chunks(handle, chunks))

    def next_done(self, timeout_s: float) -> tuple[int, list[Chunk], list[ChunkResult] | None] | None:
        done, self._done = getattr(self, "_done", None), None
        return done
