"""Backends: where chunks run. `LocalBackend` runs everything in this process (tests, debugging);
`RayBackend` runs stateless worker actors and a parameter-server actor on a Ray cluster.

Both expose the same four operations to the driver: the current parameters handle, `run_chunks`
(results in chunk order, whichever worker computed them), `apply` (one outer step, returning the
next parameters handle) and `state`/`load_state`. In RayBackend the parameters travel through the
object store once per version (the return value of `apply` is the broadcast itself), lost workers
are replaced and their chunks re-dispatched, and a chunk that outlives `chunk_timeout_s` gets a
backup copy on another worker; the first result wins.

On a local Ray in synchronous mode the driver is worker 0 (`runtime.driver_worker`): it computes its
share of each step in-process after dispatching the actors' shares, the way RLlib's local worker
does. On small models a Ray round trip (~2 ms here) costs as much as the compute, so this takes one
round trip off every step. Its chunks never need a backup or a re-dispatch: if the driver dies, the
run resumes from its checkpoint.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np

from meta_dist.config import Config
from meta_dist.runtime import faults
from meta_dist.runtime.server import ParameterServer
from meta_dist.runtime.wire import Chunk, ChunkResult
from meta_dist.runtime.worker import ChunkWorker

log = logging.getLogger("meta_dist")
INLINE_BYTES = 64 * 1024  # below this, Ray inlines call arguments; above, one put per version


class LocalBackend:
    """Everything in one process: the same worker and server classes, called directly."""

    def __init__(self, config: Config, init_params: dict, data_dir: str | None = None):
        self.worker = ChunkWorker(config, 0, data_dir)
        self.server = ParameterServer(config, init_params)
        self.num_workers = 1
        self._handle = self.server.params()

    def params_handle(self) -> Any:
        return self._handle

    def run_chunks(self, handle: Any, chunks: list[Chunk]) -> list[ChunkResult]:
        return self.worker.run_chunks(handle, chunks)

    def apply(self, mean_update: np.ndarray, step: int) -> Any:
        self._handle = self.server.apply(mean_update, step)
        return self._handle

    def state(self) -> dict:
        return self.server.state_dict()

    def load_state(self, state: dict) -> None:
        self.server.load_state_dict(state)
        self._handle = self.server.params()

    def shutdown(self) -> None:
        pass

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


LOCAL = "driver"  # stands in `RayBackend.workers` for the driver's in-process worker


class DriverShare:
    """How many of a step's chunks the driver keeps (the actors split the rest), chosen by timing the
    real steps: after `warmup` steps at the even share, every share from none to all is timed for
    `trials` steps, the fastest (median) is kept, and all are timed again every `refresh` steps, since
    the machine's load changes. Timing whole steps captures what a model of compute rates would miss:
    the round trip to an actor, and the driver and the actors slowing each other on shared cores. On a
    tiny model where a round trip costs more than the compute it moves, the driver keeps everything, so
    adding a worker does not make a step slower; on Omniglot it settles on the even split."""

    def __init__(self, warmup: int = 10, trials: int = 3, refresh: int = 1000):
        self.warmup, self.trials, self.refresh = warmup, trials, refresh
        self.steps = 0
        self.times: dict[tuple[int, int], list[float]] = {}

    def choose(self, num_chunks: int, even: int) -> int:
        self.steps += 1
        if self.steps <= self.warmup:
            return even
        if self.steps % self.refresh == 0:
            self.times.clear()
        candidates = range(num_chunks + 1)
        for share in candidates:
            if len(self.times.get((num_chunks, share), ())) < self.trials:
                return share
        return min(candidates, key=lambda share: float(np.median(self.times[(num_chunks, share)])))

    def settling_steps(self, num_chunks: int) -> int:
        """Steps until the share is chosen (the warm-up, then every share timed)."""
        return self.warmup + (num_chunks + 1) * self.trials

    def record(self, num_chunks: int, share: int, seconds: float) -> None:
        if self.steps <= self.warmup:  # first steps run slow (allocations, caches): not a fair timing
            return
        samples = self.times.setdefault((num_chunks, share), [])
        samples.append(seconds)
        del samples[:-self.trials]


class RayBackend:
    """Worker actors (and the driver as worker 0 where it computes), plus a parameter-server actor in
    async mode; fault handling lives in `run_chunks`."""

    def __init__(self, config: Config, init_params: dict, data_dir: str | None = None):
        import ray

        from meta_dist.runtime import placement

        self.ray = ray
        self.config = config
        self.data_dir = data_dir
        self.owns_ray = placement.init_ray(config)
        self.num_workers = placement.resolve_num_workers(config, ray.cluster_resources())
        # Synchronous mode keeps the parameter server in the driver process: every step waits on
        # it, and an actor hop measured 2.5 ms per step (25% of a sinusoid step on 2 cores). The
        # asynchronous driver runs it as an actor, where workers must reach it without the driver.
        self.local_server = config.runtime.mode == "sync"
        if self.local_server:
            self.server = ParameterServer(config, init_params)
        else:
            self.server = ray.remote(ParameterServer).options(num_cpus=0, max_restarts=0).remote(config, init_params)
        self.local: ChunkWorker | None = None
        self.driver_share = DriverShare()
        self._driver_threads = None
        if placement.driver_computes(config):
            import torch

            self._driver_threads = torch.get_num_threads()  # ChunkWorker pins it; restored at shutdown
            self.local = ChunkWorker(config, 0, data_dir, "cpu", config.runtime.threads_per_worker)
        first_actor = 1 if self.local is not None else 0
        self.workers = [LOCAL] * first_actor + [self._start_worker(i - first_actor)
                                                for i in range(first_actor, self.num_workers)]
        self.weights = [1.0] * self.num_workers
        self.alive = [True] * self.num_workers
        self._revival: dict[Any, int] = {}  # ping ref -> index of a lost worker being restarted
        self._wait_placed()
        self._handle = self._broadcast(self.server.params()) if self.local_server else self.server.params.remote()
        self._version = 0
        self._inflight: dict[Any, tuple[int, list[Chunk], float]] = {}
        self.lost_workers = 0
        self.backup_tasks = 0

    # -- workers -----------------------------------------------------------------------------
    def _start_worker(self, ordinal: int):
        """The actor of the `ordinal`-th actor slot (GPU slots first); its worker id is its index."""
        from meta_dist.runtime import placement

        index = ordinal + (1 if self.local is not None else 0)
        res = placement.worker_resources(self.config, ordinal)
        device = "cuda" if res["num_gpus"] > 0 else "cpu"
        actor_cls = self.ray.remote(ChunkWorker)
        env = {k: os.environ[k] for k in (faults.ENV,) if k in os.environ}
        return actor_cls.options(num_cpus=res["num_cpus"], num_gpus=res["num_gpus"], max_restarts=-1,
                                 max_task_retries=0, scheduling_strategy="SPREAD",
                                 runtime_env={"env_vars": env} if env else None).remote(
            self.config, index, self.data_dir, device, res["num_cpus"] if device == "cpu" else 1)

    def _wait_placed(self) -> None:
        from meta_dist.errors import UserError

        timeout = self.config.runtime.placement_timeout_s
        refs = [w.ping.remote() for w in self.workers if w is not LOCAL]
        ready, pending = self.ray.wait(refs, num_returns=len(refs), timeout=timeout) if refs else ([], [])
        if pending:
            raise UserError(f"only {len(ready)} of {len(refs)} worker actors could be placed within "
                            f"{timeout:g} s; lower --workers or add resources")
        self.worker_info = ([self.local.ping()] if self.local is not None else []) + self.ray.get(refs)

    # -- the four driver operations ------------------------------------------------------------
    def params_handle(self) -> Any:
        return self._handle

    def _broadcast(self, params: tuple[int, np.ndarray]) -> Any:
        """One object-store put per version; small parameter vectors travel inline with the call."""
        if params[1].nbytes <= INLINE_BYTES:
            return params
        return self.ray.put(params)

    @property
    def version(self) -> int:
        return self._version

    def apply(self, mean_update: np.ndarray, step: int) -> Any:
        self._version += 1
        if self.local_server:
            self._handle = self._broadcast(self.server.apply(mean_update, step))
        else:
            self._handle = self.server.apply.remote(mean_update, step)
        return self._handle

    def state(self) -> dict:
        return self.server.state_dict() if self.local_server else self.ray.get(self.server.state_dict.remote())

    def load_state(self, state: dict) -> None:
        self._version = int(state["version"])
        if self.local_server:
            self.server.load_state_dict(state)
            self._handle = self._broadcast(self.server.params())
        else:
            self.ray.get(self.server.load_state_dict.remote(state))
            self._handle = self.server.params.remote()

    def shutdown(self) -> None:
        from meta_dist.runtime import placement

        for actor in ([] if self.local_server else [self.server]) + self.workers:
            if actor is not LOCAL:
                self.ray.kill(actor, no_restart=True)
        if self._driver_threads is not None:
            import torch

            torch.set_num_threads(self._driver_threads)
        if self.owns_ray:
            placement.shutdown_ray()

    # -- dispatch with re-dispatch and backup tasks ------------------------------------------
    def _partition(self, chunks: list[Chunk]) -> list[tuple[int, list[Chunk]]]:
        """Contiguous groups of chunks for the live workers, sized by measured throughput; where the
        driver computes, its share comes from `driver_share` and the actors split the rest."""
        self._check_revivals()
        live = [i for i, ok in enumerate(self.alive) if ok] or list(range(len(self.workers)))
        if self.local is not None and len(live) > 1:
            even = round(len(chunks) / len(live))
            share = self.driver_share.choose(len(chunks), even)
            return [(0, chunks[:share])] + self._split(chunks[share:], live[1:])
        return self._split(chunks, live)

    def _split(self, chunks: list[Chunk], live: list[int]) -> list[tuple[int, list[Chunk]]]:
        total = sum(self.weights[i] for i in live)
        groups, start = [], 0
        for n, i in enumerate(live):
            end = len(chunks) if n == len(live) - 1 else start + round(len(chunks) * self.weights[i] / total)
            groups.append((i, chunks[start:end]))
            start = end
        return groups

    def _mark_lost(self, index: int) -> None:
        """Stop handing chunks to a lost worker until its restarted actor answers a ping."""
        if self.alive[index]:
            self.alive[index] = False
            self._revival[self.workers[index].ping.remote()] = index

    def _check_revivals(self) -> None:
        if not self._revival:
            return
        ready, _ = self.ray.wait(list(self._revival), num_returns=len(self._revival), timeout=0)
        for ref in ready:
            index = self._revival.pop(ref)
            try:
                self.ray.get(ref)
                self.alive[index] = True
                log.warning("worker %d is back", index)
            except self.ray.exceptions.RayError:
                self._revival[self.workers[index].ping.remote()] = index

    def _next_live(self, after: int) -> int:
        n = len(self.workers)
        for k in range(1, n + 1):
            if self.alive[(after + k) % n]:
                return (after + k) % n
        return (after + 1) % n

    def run_chunks(self, handle: Any, chunks: list[Chunk]) -> list[ChunkResult]:
        ray = self.ray
        timeout_s = self.config.runtime.chunk_timeout_s
        results: dict[int, ChunkResult] = {}
        pending: dict[Any, tuple[int, list[Chunk], float]] = {}
        backed_up: set[int] = set()
        first_failure: float | None = None
        local: list[Chunk] = []

        def submit(index: int, group: list[Chunk]) -> None:
            if self.workers[index] is LOCAL:
                local.extend(group)  # computed by this process once the actors have theirs
            else:
                pending[self.workers[index].run_chunks.remote(handle, group)] = (index, group, time.monotonic())

        def run_local() -> None:
            if not local:
                return
            params = ray.get(handle) if isinstance(handle, ray.ObjectRef) else handle  # local read, no copy
            for r in self.local.run_chunks(params, local):
                results.setdefault(r.chunk_id, r)
            local.clear()

        started = time.perf_counter()
        faulted = False
        groups = self._partition(chunks)
        # The driver's share was chosen by `driver_share` when it computes beside live actors.
        timed_share = len(groups[0][1]) if self.local is not None and len(groups) > 1 else None
        for i, group in groups:
            if group:
                submit(i, group)
        run_local()
        while len(results) < len(chunks):
            if local:
                run_local()
                continue
            # Wait for everything at once (the normal case is one round trip per step); a timeout or
            # a failure falls through to the per-call handling below.
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=min(1.0, timeout_s))
            for ref, values in zip(ready, self._get_all(ready)):
                index, group, started = pending.pop(ref)
                try:
                    values = ray.get(ref) if values is None else values
                    for r in values:
                        results.setdefault(r.chunk_id, r)
                    self._observe(index, values)
                    first_failure = None
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                        ray.exceptions.ObjectLostError) as e:
                    faulted = True
                    self.lost_workers += 1
                    first_failure = first_failure or time.monotonic()
                    self._mark_lost(index)
                    next_worker = self._next_live(index)
                    log.warning("worker %d lost during step %d (%s); re-dispatching %d chunk(s) to worker %d",
                                index, group[0].step, type(e).__name__, len(group), next_worker)
                    missing = [c for c in group if c.chunk_id not in results]
                    if missing:
                        submit(next_worker, missing)
            now = time.monotonic()
            if first_failure is not None and now - first_failure > self.config.runtime.placement_timeout_s:
                raise RuntimeError(f"no worker could complete a chunk for {self.config.runtime.placement_timeout_s:g} s "
                                   f"after worker failures; the cluster has lost its workers")
            for ref, (index, group, started) in list(pending.items()):
                slow = [c for c in group if c.chunk_id not in results and c.chunk_id not in backed_up]
                if slow and now - started > timeout_s and len(self.workers) > 1:
                    backup = self._next_live(index)
                    log.warning("chunk(s) %s of step %d exceeded %g s on worker %d; backup on worker %d",
                                [c.chunk_id for c in slow], group[0].step, timeout_s, index, backup)
                    backed_up.update(c.chunk_id for c in slow)
                    faulted = True
                    self.backup_tasks += 1
                    submit(backup, slow)
        for ref in pending:  # stragglers whose chunks were already answered by a backup
            ray.cancel(ref, force=False)
        if timed_share is not None and not faulted:  # a fault's step says nothing about the share
            self.driver_share.record(len(chunks), timed_share, time.perf_counter() - started)
        return [results[c.chunk_id] for c in chunks]

    # -- asynchronous-mode primitives: one outstanding call per worker, results as they come ------
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
                    self._mark_lost(index)
                    return index, chunks, None
            return None
        index, chunks, started = self._inflight.pop(ready[0])
        try:
            return index, chunks, self.ray.get(ready[0])
        except (self.ray.exceptions.RayActorError, self.ray.exceptions.WorkerCrashedError,
                self.ray.exceptions.ObjectLostError) as e:
            self.lost_workers += 1
            self._mark_lost(index)
            log.warning("worker %d lost (%s); re-queueing %d chunk(s)", index, type(e).__name__, len(chunks))
            return index, chunks, None

    def _get_all(self, refs: list) -> list:
        """Values of `refs` in one call; None for each if any failed (then fetched one by one)."""
        try:
            return self.ray.get(refs)
        except self.ray.exceptions.RayError:
            return [None] * len(refs)

    def _observe(self, index: int, results: list[ChunkResult]) -> None:
        """Track tasks/s per worker so that, on mixed CPU/GPU jobs, faster workers get more chunks.

        Homogeneous workers keep equal shares: measured rates only add noise there.
        """
        tasks = sum(r.num_tasks for r in results)
        busy_s = sum(r.compute_s for r in results)
        if self.config.runtime.num_gpu_workers and busy_s > 0 and tasks:
            self.weights[index] = 0.7 * self.weights[index] + 0.3 * tasks / busy_s
