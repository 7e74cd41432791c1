"""Evaluation episodes on a RayBackend's workers: the end of `train` on the run's own workers,
`meta-dist eval --workers N` on workers started for it.

The episodes come in fixed chunks (evaluation.py). Each actor has the next chunks queued on it (two at a
time), so it never waits for the driver between chunks; where the driver is worker 0 it computes one chunk
in-process on each turn of its loop. Curves are put back in chunk order, so the result does not depend on
which worker computed what. An actor that dies, or holds a chunk past `runtime.chunk_timeout_s`, is left
out for the rest of the evaluation and its chunks go back to the queue; with no actor left, the driver
computes the rest. An exception in the user's code is raised once, with its traceback.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter, deque
from typing import Callable, Iterator

import torch

from meta_dist.config import Config, with_overrides
from meta_dist.errors import UserError
from meta_dist.evaluation import EvalSettings
from meta_dist.params import ParamLayout
from meta_dist.runtime.step_runner import raise_cause
from meta_dist.tasks.spec import TaskSpec

log = logging.getLogger("meta_dist")
PREFETCH = 2  # chunks queued on each actor at a time


class EvalPool:
    def __init__(self, backend):
        """`backend`: a RayBackend whose workers are free (training has ended); its compiled channels
        close, since evaluation reaches the actors by ordinary calls."""
        backend.close_channels()
        self.backend, self.ray = backend, backend.ray
        self.actors = [i for i, ok in enumerate(backend.alive) if ok and not backend.is_local(i)]
        ex = self.ray.exceptions
        self.lost_errors = (ex.RayActorError, ex.WorkerCrashedError, ex.ObjectLostError)
        self.head_since: dict[int, float] = {}  # actor -> when the oldest of its queued chunks started

    @property
    def num_workers(self) -> int:
        return len(self.actors) + (self.backend.local is not None)

    def curves(self, params: dict[str, torch.Tensor], chunks: list[list[TaskSpec]], settings: EvalSettings,
               in_process: Callable[[int], torch.Tensor], progress) -> list[torch.Tensor]:
        """Every chunk's curves, in chunk order; `in_process(j)` computes chunk j in the driver."""
        flat = self.ray.put(ParamLayout.of(params).flatten(params).detach().cpu().numpy())
        send = lambda index, j: self.backend.workers[index].eval_chunk.remote(flat, chunks[j], settings)  # noqa: E731
        queue, inflight = deque(range(len(chunks))), {}
        out: list[torch.Tensor | None] = [None] * len(chunks)
        total, done = sum(len(c) for c in chunks), 0
        while queue or inflight:
            self._fill(queue, inflight, send)
            finished = []
            if queue and self._driver_computes():
                j = queue.popleft()
                out[j] = in_process(j)
                finished.append(j)
            finished += self._collect(inflight, queue, out)
            for j in finished:
                done += len(chunks[j])
                progress(done, total)
        return out

    def _fill(self, queue: deque, inflight: dict, send: Callable) -> None:
        """Queues chunks on the actors, breadth first, up to PREFETCH each. An actor runs its calls in order,
        so it starts its next chunk as soon as one is done, even while the driver computes a chunk of its
        own. A further chunk goes only where the queue outlasts a round of all workers: at the end, a chunk
        queued behind a busy actor would leave another worker idle."""
        load = Counter(index for index, _ in inflight.values())
        for index in self.actors:
            if not load[index]:
                self.head_since[index] = time.monotonic()
        for depth in range(1, PREFETCH + 1):
            for index in self.actors:
                if queue and load[index] < depth and (depth == 1 or len(queue) > self.num_workers):
                    j = queue.popleft()
                    inflight[send(index, j)] = (index, j)
                    load[index] += 1

    def _driver_computes(self) -> bool:
        """Whether the driver takes a chunk while the actors work: where it is a worker, or no actor is left."""
        return self.backend.local is not None or not self.actors

    def _collect(self, inflight: dict, queue: deque, out: list) -> list[int]:
        """The calls finished by now, waiting up to a second if the driver has nothing to compute."""
        if not inflight:
            return []
        wait_s = 0.0 if queue and self._driver_computes() else 1.0
        ready, _ = self.ray.wait(list(inflight), num_returns=1, timeout=wait_s)
        finished = []
        for ref in ready:
            index, j = inflight.pop(ref)
            try:
                out[j] = torch.tensor(self.ray.get(ref))  # a copy: the object store's array is read-only
                finished.append(j)
                self.head_since[index] = time.monotonic()  # its next queued chunk starts now
            except self.ray.exceptions.RayTaskError as e:
                raise_cause(e)
            except self.lost_errors as e:
                self._drop(index, inflight, queue, f"lost ({type(e).__name__})")
                queue.appendleft(j)  # ahead of the chunks that were queued behind it
        now, limit = time.monotonic(), self.backend.config.runtime.chunk_timeout_s
        busy = {index for index, _ in inflight.values()}
        for index in [i for i in self.actors if i in busy and now - self.head_since[i] > limit]:
            self.ray.kill(self.backend.workers[index], no_restart=False)
            self._drop(index, inflight, queue, f"past chunk_timeout_s ({limit:g} s)")
        return finished

    def _drop(self, index: int, inflight: dict, queue: deque, why: str) -> None:
        """Leaves actor `index` out from now on; its queued chunks go back to the front of the queue."""
        self.actors.remove(index)
        mine = [ref for ref, (i, _) in inflight.items() if i == index]
        queue.extendleft(reversed([inflight.pop(ref)[1] for ref in mine]))
        log.warning("evaluation: worker %d %s; its episodes go to another worker", index, why)


def eval_config(config: Config, workers: int) -> Config:
    """The run's config for evaluation workers: synchronous, ordinary actor calls, `workers` workers."""
    return with_overrides(config, runtime={"backend": "ray", "mode": "sync", "num_workers": workers,
                                           "compiled_graph": False})


def check_eval_workers(workers: int | None, backend: str | None) -> bool:
    """Whether the evaluation runs on workers; a UserError for a request that cannot be met."""
    if workers is not None and workers <= 0:
        raise UserError(f"--workers must be positive, got {workers}")
    if backend not in (None, "local", "ray"):
        raise UserError(f"--backend must be local or ray, got {backend!r}")
    if backend == "local" and (workers or 1) > 1:
        raise UserError(f"--workers {workers} needs --backend ray (the local backend is this one process)")
    return backend == "ray" or (workers or 1) > 1


@contextlib.contextmanager
def eval_workers(config: Config, params: dict, components, workers: int | None,
                 backend: str | None) -> Iterator[EvalPool | None]:
    """Workers for `meta-dist eval` / `meta_dist.evaluate`: None (this process) unless `backend` is
    "ray" or `workers` > 1, then a pool of `workers` (default: the run's runtime.num_workers)."""
    if not check_eval_workers(workers, backend):
        yield None
        return
    from meta_dist.runtime.backend import RayBackend

    ray_backend = RayBackend(eval_config(config, workers or config.runtime.num_workers), params, components)
    try:
        yield EvalPool(ray_backend)
    finally:
        ray_backend.shutdown()
