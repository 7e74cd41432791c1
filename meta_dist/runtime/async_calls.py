"""RayBackend's asynchronous-mode primitives: one outstanding call per worker, results as they come.

A mixin of `RayBackend` (backend.py), which provides `workers`, `alive`, `mark_lost`, `_check_revivals`
and the `_inflight` map of call ref -> (worker, chunks, start time).
"""
from __future__ import annotations

import logging
import time
from typing import Any

from meta_dist.runtime.step_runner import raise_cause
from meta_dist.runtime.wire import Chunk, ChunkResult

log = logging.getLogger("meta_dist")


class AsyncCalls:
    def live_workers(self) -> list[int]:
        self._check_revivals()
        busy = {index for index, _, _ in self._inflight.values()}
        return [i for i, ok in enumerate(self.alive) if ok and i not in busy]

    def dispatch(self, index: int, handle: Any, chunks: list[Chunk]) -> None:
        self._inflight[self.workers[index].run_chunks.remote(handle, chunks)] = (index, chunks, time.monotonic())

    def next_done(self, timeout_s: float) -> tuple[int, list[Chunk], list[ChunkResult] | None] | None:
        """The next finished call: (worker, chunks, results), results None if the worker was lost
        or the call outlived chunk_timeout_s (its chunks are then the caller's to re-queue)."""
        if not self._inflight:
            return None
        ready, _ = self.ray.wait(list(self._inflight), num_returns=1, timeout=timeout_s)
        if not ready:
            now = time.monotonic()
            for ref, (index, chunks, started) in list(self._inflight.items()):
                if now - started > self.config.runtime.chunk_timeout_s:
                    del self._inflight[ref]  # its late result, if any, is dropped with the ref
                    log.warning("chunk(s) %s on worker %d exceeded %g s; re-queued", [c.key for c in chunks],
                                index, self.config.runtime.chunk_timeout_s)
                    self.mark_lost(index)
                    return index, chunks, None
            return None
        index, chunks, started = self._inflight.pop(ready[0])
        try:
            return index, chunks, self.ray.get(ready[0])
        except self.ray.exceptions.RayTaskError as e:
            raise_cause(e)
        except (self.ray.exceptions.RayActorError, self.ray.exceptions.WorkerCrashedError,
                self.ray.exceptions.ObjectLostError) as e:
            self.lost_workers += 1
            self.mark_lost(index)
            log.warning("worker %d lost (%s); re-queueing %d chunk(s)", index, type(e).__name__, len(chunks))
            return index, chunks, None
