"""The evaluation pool's bookkeeping on fake actors: chunks queued ahead on each actor, timed from the
moment each starts, and handed back in order when their actor is dropped. No Ray: the pool's real path is
tested in tests/integration/test_eval_pool.py."""
from __future__ import annotations

import time
from collections import deque
from types import SimpleNamespace

import pytest

from meta_dist.runtime import eval_pool
from meta_dist.runtime.eval_pool import PREFETCH, EvalPool

LIMIT_S = 60.0


class Lost(Exception):
    pass


class FakeRay:
    """Refs are (actor, chunk) pairs; a ref is ready once the test puts it in `ready`."""
    exceptions = SimpleNamespace(RayActorError=Lost, WorkerCrashedError=Lost, ObjectLostError=Lost,
                                 RayTaskError=RuntimeError)

    def __init__(self):
        self.ready: list = []
        self.killed: list[int] = []

    def wait(self, refs, num_returns, timeout):
        done = [r for r in refs if r in self.ready][:num_returns]
        return done, [r for r in refs if r not in done]

    def get(self, ref):
        return [float(ref[1])]

    def kill(self, actor, no_restart):
        self.killed.append(actor.index)


def pool(actors: int = 2) -> EvalPool:
    ray = FakeRay()
    backend = SimpleNamespace(ray=ray, alive=[True] * actors, local=None, close_channels=lambda: None,
                              is_local=lambda i: False, workers=[SimpleNamespace(index=i) for i in range(actors)],
                              config=SimpleNamespace(runtime=SimpleNamespace(chunk_timeout_s=LIMIT_S)))
    return EvalPool(backend)


def fill(p: EvalPool, chunks: int):
    queue, inflight = deque(range(chunks)), {}
    p._fill(queue, inflight, lambda index, j: (index, j))
    return queue, inflight


def test_every_actor_has_prefetch_chunks_queued_breadth_first():
    p = pool()
    queue, inflight = fill(p, 7)
    assert PREFETCH == 2
    assert list(inflight.values()) == [(0, 0), (1, 1), (0, 2), (1, 3)]
    assert list(queue) == [4, 5, 6]


def test_at_the_end_no_chunk_waits_behind_a_busy_actor():
    p = pool()
    queue, inflight = fill(p, 5)  # after a round of both actors, 3 chunks: one more, then 2 for 2 workers
    assert list(inflight.values()) == [(0, 0), (1, 1), (0, 2)]
    assert list(queue) == [3, 4]


def test_a_queued_chunk_is_timed_from_when_its_predecessor_finished(monkeypatch):
    p = pool()
    queue, inflight = fill(p, 6)
    queue.clear()  # nothing left to send: only the four queued chunks
    clock = time.monotonic()
    monkeypatch.setattr(eval_pool.time, "monotonic", lambda: clock)
    clock += LIMIT_S - 1
    p.backend.ray.ready = [(0, 0)]
    out = [None] * 6
    assert p._collect(inflight, queue, out) == [0]  # actor 0's second chunk starts its clock now
    clock += LIMIT_S - 1
    p.backend.ray.ready = [(1, 1)]
    assert p._collect(inflight, queue, out) == [1]
    assert p.backend.ray.killed == [] and p.actors == [0, 1]
    clock += 2
    p.backend.ray.ready = []
    assert p._collect(inflight, queue, out) == []
    assert p.backend.ray.killed == [0] and p.actors == [1]
    assert list(queue) == [2] and list(inflight.values()) == [(1, 3)]


def test_a_lost_actor_hands_back_all_its_chunks_in_order():
    p = pool()
    queue, inflight = fill(p, 6)

    def get(ref):
        if ref[0] == 1:
            raise Lost
        return [float(ref[1])]

    p.backend.ray.get = get
    p.backend.ray.ready = [(1, 1)]
    assert p._collect(inflight, queue, [None] * 6) == []
    assert p.actors == [0]
    assert list(queue) == [1, 3, 4, 5]
    assert list(inflight.values()) == [(0, 0), (0, 2)]


@pytest.mark.parametrize("actors", [1, 3])
def test_no_more_than_prefetch_chunks_per_actor(actors):
    p = pool(actors)
    queue, inflight = fill(p, 100)
    assert len(inflight) == PREFETCH * actors and len(queue) == 100 - PREFETCH * actors
