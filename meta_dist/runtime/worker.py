"""The chunk worker: turns (parameters, chunk of task specs) into one flat update.

A plain class, so every test can run it in one process; `RayBackend` wraps it in an actor. It
receives the run's components (task family and network factory) as objects built once by the
driver, and holds no training state (only the network's structure and the task store handle), so
running a chunk twice is harmless and a replacement worker is as good as the original. Each chunk
runs with the torch random state seeded from its specs (dropout masks are the same whichever worker
computes it, and the process's own random state is left as it was). An exception while computing a
chunk becomes a `ChunkError` carrying its traceback: the same chunk would fail on any worker, so the
driver stops the run instead of re-dispatching it. Each worker pins its intra-op thread count: tiny
convolutions do not speed up with threads, and oversubscribed cores slow small-op jobs many times over.
"""
from __future__ import annotations

import os
import time
import traceback
import warnings

import numpy as np
import torch

from meta_dist.allocator import keep_freed_memory
from meta_dist.components import Components
from meta_dist.config import Config
from meta_dist.errors import ChunkError, UserError
from meta_dist.evaluation import EvalSettings, eval_curves
from meta_dist.params import ParamLayout
from meta_dist.runtime.faults import FaultPlan
from meta_dist.runtime.node_fold import Partial, fold
from meta_dist.runtime.wire import Chunk, ChunkResult
from meta_dist.tasks.spec import TaskSpec, derive_seed


def as_tensor(flat: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A zero-copy tensor view of a (possibly read-only, object-store backed) float32 array."""
    if isinstance(flat, torch.Tensor):
        return flat
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # read-only buffer: we never write to it
        return torch.from_numpy(flat)


class ChunkWorker:
    def __init__(self, config: Config, components: Components, worker_id: int = 0, device: str = "cpu",
                 threads: int | None = None):
        keep_freed_memory()
        self.worker_id = worker_id
        self.device = torch.device(device)
        torch.set_num_threads(threads or config.runtime.threads_per_worker)
        self.family = components.family
        self.algorithm = components.algorithm(config, self.device)
        self.layout = ParamLayout.of(self.algorithm.init_params(0))
        self.rng_devices = [self.device.index or 0] if self.device.type == "cuda" else []
        self.fault_plan = FaultPlan.from_env()  # scheduled fault injection (tests, drills); usually None

    def ping(self) -> dict:
        info = {"worker_id": self.worker_id, "pid": os.getpid(), "device": str(self.device),
                "threads": torch.get_num_threads(), "niceness": os.nice(0), "node_id": ""}
        try:
            import ray  # only to report placement; the worker's logic never depends on it

            if ray.is_initialized():
                info["node_id"] = ray.get_runtime_context().get_node_id()
        except ImportError:
            pass
        return info

    def run_chunk(self, params: tuple[int, np.ndarray | torch.Tensor], chunk: Chunk) -> ChunkResult:
        version, flat = params
        if self.fault_plan is not None:
            self.fault_plan.before_chunk(self.worker_id, chunk)
        start = time.perf_counter()
        named = self.layout.unflatten(as_tensor(flat).to(self.device))
        with torch.random.fork_rng(devices=self.rng_devices):
            torch.manual_seed(derive_seed("chunk", chunk.step, chunk.chunk_id, chunk.specs[0].seed))
            self.algorithm.model.train()
            out = self.algorithm.chunk_update(named, chunk.specs)
        update = self.layout.flatten({k: out.grads[k] for k in self.layout.names}).detach()
        if self.fault_plan is not None:
            update = self.fault_plan.corrupt_update(self.worker_id, chunk, update)
        finite = bool(torch.isfinite(update).all())
        return ChunkResult(chunk.step, chunk.chunk_id, version, update.cpu().numpy(), out.num_tasks,
                           out.metrics, "ok" if finite else "nonfinite", self.worker_id,
                           time.perf_counter() - start)

    def run_chunks(self, params: tuple[int, np.ndarray | torch.Tensor], chunks: list[Chunk]) -> list[ChunkResult]:
        return [self._guarded(f"computing chunk {chunk.chunk_id} of step {chunk.step}", self.run_chunk, params, chunk)
                for chunk in chunks]

    def fold_results(self, prefix: Partial | None, *result_lists: list[ChunkResult]) -> Partial:
        """This node's chunk results folded onto the previous nodes' partial sum (node_fold.py)."""
        return fold(prefix, [r for results in result_lists for r in results])

    def eval_chunk(self, flat: np.ndarray, specs: list[TaskSpec], settings: EvalSettings) -> np.ndarray:
        """One chunk of evaluation episodes at the flat parameters `flat`: their curves [tasks, S]."""
        def run():
            named = self.layout.unflatten(as_tensor(flat).to(self.device))
            return eval_curves(self.algorithm, named, specs, settings).cpu().numpy()

        return self._guarded(f"evaluating episodes {specs[0].index}..{specs[-1].index}", run)

    def _guarded(self, what: str, fn, *args):
        """`fn(*args)`; an exception in it (the user's code, most often) becomes a ChunkError with its
        traceback, which the driver shows once and never retries."""
        try:
            return fn(*args)
        except (UserError, ChunkError):
            raise
        except Exception:
            raise ChunkError(f"worker {self.worker_id}, {what},", traceback.format_exc()) from None
