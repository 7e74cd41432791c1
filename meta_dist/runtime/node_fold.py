"""The chunk-order sum of a synchronous step, and its node-local form for runs that span nodes.

A step's update is the left fold, in chunk order, of its finite chunk updates: (((u0 + u1) + u2) + ...).
Floating-point addition is not associative, so a sum split any other way (per node, then across nodes)
would depend on the placement. What can be split is the fold itself: given the partial sum of every
chunk before its own, a node continues it over its own chunks and hands on one vector. So when the
workers span nodes, each node gets one contiguous range of chunks (nodes in a fixed order, the driver's
first), one of its workers folds the node's results onto the partial that the previous node handed
on, and the driver receives a single update per step, whatever the number of nodes and workers, with
the same bits as the one-process sum. Ray moves each partial once, node to node, as an argument of the
next node's fold; the chunk updates never leave their node.

The fast path has no backups or re-dispatch: if any part of it fails or outlives the chunk timeout, the
step runs again through `StepRunner`, which recovers as always (chunks are pure functions of the
parameters and their specs, so the re-run gives the same bits).
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from meta_dist.runtime.wire import Chunk, ChunkResult

log = logging.getLogger("meta_dist")


@dataclass(frozen=True)
class Partial:
    """The fold of a step's chunks up to some chunk: the sum of the finite updates, their task count
    and metric sums, and every folded chunk's result without its update (worker, timing, status)."""
    total: np.ndarray | None
    num_tasks: int
    metrics: dict[str, float]
    results: tuple[ChunkResult, ...]

    @property
    def last_key(self) -> tuple[int, int] | None:
        return self.results[-1].key if self.results else None


def fold(prefix: Partial | None, results: Iterable[ChunkResult]) -> Partial:
    """Continue `prefix` (None: from nothing) over `results`, which must all come after it in chunk order."""
    total, num_tasks = (None, 0) if prefix is None else (prefix.total, prefix.num_tasks)
    metrics = {} if prefix is None else dict(prefix.metrics)
    done = [] if prefix is None else list(prefix.results)
    for r in sorted(results, key=lambda r: r.key):
        if done and r.key <= done[-1].key:
            raise ValueError(f"chunk {r.key} folded after chunk {done[-1].key}")
        done.append(dataclasses.replace(r, update=np.empty(0, np.float32)))
        if not r.ok:
            continue
        total = r.update.astype(np.float32, copy=True) if total is None else total + r.update
        num_tasks += r.num_tasks
        for k, v in r.metrics.items():
            metrics[k] = metrics.get(k, 0.0) + v
    return Partial(total, num_tasks, metrics, tuple(done))


def finish(partial: Partial) -> tuple[np.ndarray | None, int, dict[str, float], int]:
    """The step's sum, task count, metric sums and bad chunks; None if the sum itself overflowed."""
    bad = sum(not r.ok for r in partial.results)
    if partial.total is not None and not np.isfinite(partial.total).all():  # finite chunks can overflow in sum
        return None, 0, {}, len(partial.results)
    return partial.total, partial.num_tasks, partial.metrics, bad


def node_order(worker_nodes: list[str], driver_node: str) -> list[int]:
    """Worker indices grouped by node, the driver's node first, then in order of first appearance."""
    ranks = {driver_node: 0}
    for node in worker_nodes:
        ranks.setdefault(node, len(ranks))
    return sorted(range(len(worker_nodes)), key=lambda i: (ranks[worker_nodes[i]], i))


class NodeFoldStep:
    """One synchronous step folded node by node: `run()` returns the step's Partial, or None when the
    step must run again through StepRunner (a lost worker, a timeout)."""

    def __init__(self, backend, handle: Any, groups: list[tuple[int, list[Chunk]]]):
        self.backend, self.ray, self.handle = backend, backend.ray, handle
        self.groups = [(i, g) for i, g in groups if g]
        ex = self.ray.exceptions
        self.lost_errors = (ex.RayActorError, ex.WorkerCrashedError, ex.ObjectLostError, ex.GetTimeoutError)

    def run(self) -> Partial | None:
        b = self.backend
        params = b.call_params(self.handle)
        by_node: dict[str, list] = {}
        local: list[Chunk] = []
        for index, group in self.groups:  # node-contiguous, in node order
            if b.is_local(index):
                local = group
            else:
                ref = b.workers[index].run_chunks.remote(params, group)
                by_node.setdefault(b.worker_info[index]["node_id"], []).append((index, ref))
        prefix: Any = fold(None, b.local.run_chunks(self.handle, local)) if local else None
        for members in by_node.values():  # dicts keep insertion order: node order
            leader = b.workers[members[0][0]]
            prefix = leader.fold_results.remote(prefix, *(ref for _, ref in members))
        if not isinstance(prefix, self.ray.ObjectRef):
            return prefix
        try:
            return self.ray.get(prefix, timeout=b.config.runtime.chunk_timeout_s)
        except self.ray.exceptions.RayTaskError as e:
            from meta_dist.runtime.step_runner import raise_cause

            if isinstance(getattr(e, "cause", None), self.lost_errors):
                return self._fall_back(e)
            raise_cause(e)
        except self.lost_errors as e:
            return self._fall_back(e)

    def _fall_back(self, error: Exception) -> None:
        if not isinstance(error, self.ray.exceptions.GetTimeoutError):
            self.backend.lost_workers += 1
        log.warning("node-local aggregation of a step failed (%s); running the step chunk by chunk",
                    type(error).__name__)
        return None
