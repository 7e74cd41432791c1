"""The bookkeeping and recovery policy of the steps, on plain data: no Ray, an injected clock.
`StepLedger` keeps one synchronous step; `StaleSyncLedger` (at the end) the asynchronous mode's queue.

The step runner (`RayBackend.run_chunks`) tells the ledger what it sent to which worker, what came back
and which worker was lost; the ledger decides the rest:

- the first result of a chunk wins; a backup's or a re-dispatch's twin is dropped;
- a lost worker's unanswered chunks, exactly those, go to the next live worker;
- a chunk still unanswered `chunk_timeout_s` per chunk of its call after the call was sent (a worker
  computes a call's chunks one after another) gets one backup copy on another live worker, never more;
  the last live worker never backs up (there is nobody to back up to, so it is waited for);
- once the step has met a fault (a lost worker, a backup), it gives up only after `stall_timeout_s`
  without progress: no chunk result from any worker, by any path (the driver's own share, a compiled
  channel or an ordinary actor call).
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence


class StepStalled(RuntimeError):
    """No chunk of a faulted step completed for `runtime.stall_timeout_s`: the cluster has lost its workers."""


@dataclass(frozen=True)
class Dispatch:
    """Chunks sent to one worker in one call, and when."""
    worker: int
    chunk_ids: tuple[int, ...]
    sent_at: float


def next_live(after: int, alive: list[bool]) -> int:
    """The next live worker after `after`, cyclically (the one after it if none is alive)."""
    n = len(alive)
    return next(((after + k) % n for k in range(1, n + 1) if alive[(after + k) % n]), (after + 1) % n)


class StepLedger:
    def __init__(self, chunk_ids: Iterable[int], *, chunk_timeout_s: float, stall_timeout_s: float,
                 alive: Sequence[bool], clock: Callable[[], float] = time.monotonic):
        self.chunk_ids = list(chunk_ids)
        self.chunk_timeout_s, self.stall_timeout_s = chunk_timeout_s, stall_timeout_s
        self.alive = alive  # a live view: the backend's list, where workers are marked lost and back
        self.clock = clock
        self.results: dict[int, object] = {}
        self.backed_up: set[int] = set()
        self.last_progress = clock()
        self.lost_workers = 0
        self.backups = 0
        self.redispatched = 0  # chunks sent again after their worker was lost

    @property
    def done(self) -> bool:
        return len(self.results) == len(self.chunk_ids)

    @property
    def faulted(self) -> bool:
        """A lost worker or a backup in this step (its timing then says nothing about the partition)."""
        return bool(self.lost_workers or self.backups)

    def dispatch(self, worker: int, chunk_ids: Iterable[int]) -> Dispatch:
        return Dispatch(worker, tuple(chunk_ids), self.clock())

    def accept(self, results: Iterable) -> int:
        """Record chunk results (objects with `chunk_id`); the first per chunk wins. Any result is
        progress. Returns how many chunks this answered for the first time."""
        new = 0
        for r in results:
            if r.chunk_id not in self.results:
                self.results[r.chunk_id] = r
                new += 1
        self.last_progress = self.clock()
        return new

    def lost(self, dispatch: Dispatch) -> list[int]:
        """The worker of `dispatch` was lost: the chunks of it still unanswered, to send elsewhere."""
        self.lost_workers += 1
        missing = [c for c in dispatch.chunk_ids if c not in self.results]
        self.redispatched += len(missing)
        return missing

    def allowance(self, dispatch: Dispatch) -> float:
        """How long the call `dispatch` may take before its chunks are due a backup."""
        return self.chunk_timeout_s * len(dispatch.chunk_ids)

    def can_back_up(self, worker: int) -> bool:
        """Whether a live worker other than `worker` could take a backup of its chunks."""
        return any(ok for i, ok in enumerate(self.alive) if i != worker)

    def overdue(self, dispatch: Dispatch) -> list[int]:
        """Chunks of `dispatch` due a backup now (marked backed up: each gets one at most)."""
        if not self.can_back_up(dispatch.worker) or self.clock() - dispatch.sent_at <= self.allowance(dispatch):
            return []
        return self.back_up(dispatch)

    def back_up(self, dispatch: Dispatch) -> list[int]:
        """Chunks of `dispatch` that get a backup copy: those unanswered and not backed up before."""
        slow = [c for c in dispatch.chunk_ids if c not in self.results and c not in self.backed_up]
        if slow:
            self.backups += 1
            self.backed_up.update(slow)
        return slow

    def check_progress(self) -> None:
        """Raise StepStalled if a faulted step has made no progress for `stall_timeout_s`."""
        idle = self.clock() - self.last_progress
        if self.faulted and idle > self.stall_timeout_s:
            raise StepStalled(f"no worker completed a chunk for {idle:.0f} s after worker failures "
                              f"(runtime.stall_timeout_s = {self.stall_timeout_s:g}); the cluster has lost its "
                              f"workers")

    def ordered(self) -> list:
        """The results in chunk order."""
        return [self.results[c] for c in self.chunk_ids]


class StaleSyncLedger:
    """Asynchronous mode's (Stale Synchronous Parallel) bookkeeping, on plain data: the queue of chunks
    still to compute, and the results accepted toward the next commit.

    Each idle worker takes the next chunk (the next step's specs are cut into chunks when the queue runs
    dry); a result computed on parameters more than `staleness` versions behind is rejected and its chunk
    queued again at the back; the chunks of a lost or overdue call go back to the front, in order; a step
    commits once results of `meta_batch_size` tasks are in.
    """

    def __init__(self, staleness: int, meta_batch_size: int, chunks_of: Callable[[int], list], start_step: int):
        self.staleness, self.meta_batch_size, self.chunks_of = staleness, meta_batch_size, chunks_of
        self.spec_step = start_step  # the last step whose chunks were queued
        self.queue: deque = deque()
        self.accepted: list = []
        self.stale = 0  # results rejected since the last commit

    def next_chunk(self):
        if not self.queue:
            self.spec_step += 1
            self.queue.extend(self.chunks_of(self.spec_step))
        return self.queue.popleft()

    def returned(self, chunks: list, results: list | None, version: int) -> None:
        """A call came back: `results` (objects with `version`), or None if its worker was lost or it
        outlived its timeout. `version` is the server's current one."""
        if results is None:
            self.queue.extendleft(reversed(chunks))
            return
        for chunk, result in zip(chunks, results):
            if version - result.version > self.staleness:
                self.stale += 1
                self.queue.append(chunk)
            else:
                self.accepted.append(result)

    @property
    def ready(self) -> bool:
        return sum(r.num_tasks for r in self.accepted) >= self.meta_batch_size

    def take(self, version: int) -> tuple[list, int, float]:
        """The accepted results of the step to commit, the rejected count, and their mean staleness."""
        accepted, stale = self.accepted, self.stale
        staleness_mean = sum(version - r.version for r in accepted) / max(len(accepted), 1)
        self.accepted, self.stale = [], 0
        return accepted, stale, staleness_mean
