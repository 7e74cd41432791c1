"""Backends: where chunks run. `RayBackend` runs stateless worker actors and a parameter-server actor
on a Ray cluster; `LocalBackend` (local_backend.py) runs everything in this process.

Both expose the same four operations to the driver: the current parameters handle, `run_chunks`
(results in chunk order, whichever worker computed them), `apply` (one outer step, returning the
next parameters handle) and `state`/`load_state`. In RayBackend the parameters travel through the
object store once per version, lost workers are replaced and their chunks re-dispatched, and a
chunk that outlives `chunk_timeout_s` gets a backup copy on another worker; the first result wins.

In synchronous mode, actors on the driver's node are reached through a Ray Compiled Graph each
(`runtime.compiled_graph`, see compiled.py): the step's parameters and chunks go through a
shared-memory channel, a 0.07 ms round trip against 0.8 ms for an ordinary actor call. Any fault on
that path (a lost actor, a chunk past `chunk_timeout_s`, whose actor is then restarted) closes the
worker's channel and hands its chunks to the ordinary path above; the channel is compiled again once
the worker answers. A channel's reader polls while it waits, so a run whose steps keep waiting on
channels (chunks of seconds, as Meta-World's) switches to ordinary calls for good.

On a local Ray in synchronous mode the driver is worker 0 (`runtime.driver_worker`): it computes its
share of each step in-process after dispatching the actors' shares, the way RLlib's local worker
does. On small models a Ray round trip (~2 ms here) costs as much as the compute, so this takes one
round trip off every step. Its chunks never need a backup or a re-dispatch: if the driver dies, the
run resumes from its checkpoint.
"""
from __future__ import annotations

import logging
import re
import time
from typing import Any

import numpy as np

from meta_dist.components import Components
from meta_dist.config import Config
from meta_dist.errors import ChunkError, UserError
from meta_dist.runtime.async_calls import AsyncCalls
from meta_dist.runtime.compiled import Channels
from meta_dist.runtime.partition import DriverShare, split_by_weight
from meta_dist.runtime.placement import RaySession
from meta_dist.runtime.server import ParameterServer
from meta_dist.runtime.node_fold import NodeFoldStep, Partial, fold, node_order
from meta_dist.runtime.step_runner import StepRunner
from meta_dist.runtime.wire import Chunk, ChunkResult
from meta_dist.runtime.worker import ChunkWorker

log = logging.getLogger("meta_dist")
INLINE_BYTES = 64 * 1024  # below this, Ray inlines call arguments; above, one put per version


LOCAL = "driver"  # stands in `RayBackend.workers` for the driver's in-process worker
FOLD_PAUSE_STEPS = 10  # after a node-by-node step fell back, the next ones run chunk by chunk


class RayBackend(AsyncCalls):
    """Worker actors (and the driver as worker 0 where it computes), plus a parameter-server actor in
    async mode. A synchronous step runs in step_runner.py; its recovery policy is ledger.py's."""

    def __init__(self, config: Config, init_params: dict, components: Components,
                 session: RaySession | None = None):
        """`session`: the Ray this backend runs on, as `placement.init_ray` returned it (default: connect
        now, and shut down at the end whatever that call started)."""
        import ray

        from meta_dist.runtime import placement

        self.ray = ray
        self.config = config
        self.components = components
        data_dir = getattr(components.family, "data_dir", "") or ""
        if session is None:
            session = placement.init_ray(config, placement.code_runtime_env(components.code_dir, data_dir))
            self.owns_ray = session.owned
        else:
            self.owns_ray = False
        self.num_workers = placement.resolve_num_workers(config, ray.cluster_resources(), session)
        self._start_server(init_params)
        self._actor_env = placement.actor_runtime_env(components.code_dir)
        self.driver_share = DriverShare()
        self._start_driver_worker(placement.driver_computes(config, session))
        # Held for the run: an actor that Ray restarts is built again from these. Passed by value, an
        # argument too large to travel inline (Meta-World's ML45 family) is freed after the first
        # construction, and every restart then fails.
        self._worker_args = (ray.put(config), ray.put(components))
        first_actor = 1 if self.local is not None else 0
        self.workers = [LOCAL] * first_actor + [self._start_worker(i - first_actor)
                                                for i in range(first_actor, self.num_workers)]
        self.weights = [1.0] * self.num_workers
        self.alive = [True] * self.num_workers
        self._revival: dict[Any, int] = {}  # ping ref -> index of a lost worker being restarted
        self._wait_placed()
        # Sync: the handle is the (version, flat) pair itself; ordinary calls get it inline or through
        # one put per version (`call_params`), compiled channels through shared memory.
        self._handle = self.server.params() if self.local_server else self.server.params.remote()
        self._put: tuple[Any, Any] | None = None  # (handle, its object ref)
        self._version = 0
        self.channels = Channels(ray, placement.compiled_may_apply(config), config.runtime.placement_timeout_s)
        for index, info in enumerate(self.worker_info):
            self._open_channel(index, info)
        self._inflight: dict[Any, tuple[int, list[Chunk], float]] = {}
        self.lost_workers = 0
        self.backup_tasks = 0
        self.folded_steps = 0  # steps summed node by node
        self._fold_pause = 0  # steps left before node-by-node summing is tried again after a fallback
        self.ingress = (0, 0)

    def _start_server(self, init_params: dict) -> None:
        """Synchronous mode keeps the parameter server in the driver process: every step waits on it,
        and an actor hop measured 2.5 ms per step (25% of a sinusoid step on 2 cores). The asynchronous
        driver runs it as an actor, where workers must reach it without the driver."""
        self.local_server = self.config.runtime.mode == "sync"
        if self.local_server:
            self.server = ParameterServer(self.config, init_params)
        else:
            server = self.ray.remote(ParameterServer).options(num_cpus=0, max_restarts=0)
            self.server = server.remote(self.config, init_params)

    def _start_driver_worker(self, computes: bool) -> None:
        """The driver's own in-process worker 0, where it `computes` beside the actors."""
        self.local: ChunkWorker | None = None
        self._driver_threads = None
        if computes:
            import torch

            self._driver_threads = torch.get_num_threads()  # ChunkWorker pins it; restored at shutdown
            self.local = ChunkWorker(self.config, self.components, 0, "cpu", self.config.runtime.threads_per_worker)

    # -- workers -----------------------------------------------------------------------------
    def _start_worker(self, ordinal: int):
        """The actor of the `ordinal`-th actor slot (GPU slots first); its worker id is its index."""
        from meta_dist.runtime import placement

        index = ordinal + (1 if self.local is not None else 0)
        res = placement.worker_resources(self.config, ordinal)
        device = "cuda" if res["num_gpus"] > 0 else "cpu"
        actor_cls = self.ray.remote(ChunkWorker)
        return actor_cls.options(num_cpus=res["num_cpus"], num_gpus=res["num_gpus"], max_restarts=-1,
                                 max_task_retries=0, scheduling_strategy=placement.actor_scheduling(),
                                 runtime_env=self._actor_env).remote(
            *self._worker_args, index, device, res["num_cpus"] if device == "cpu" else 1)

    def _wait_placed(self) -> None:
        timeout = self.config.runtime.placement_timeout_s
        refs = [w.ping.remote() for w in self.workers if w is not LOCAL]
        ready, pending = self.ray.wait(refs, num_returns=len(refs), timeout=timeout) if refs else ([], [])
        if pending:
            raise UserError(f"only {len(ready)} of {len(refs)} worker actors could be placed within "
                            f"{timeout:g} s; lower --workers or add resources")
        try:
            answers = self.ray.get(refs)
        except self.ray.exceptions.RayActorError as e:  # its constructor raised: restarting cannot help
            missing = re.search(r"No module named '([^']+)'", str(e))
            if missing:
                raise UserError(f"the worker actors cannot import module '{missing.group(1)}'; run from the "
                                f"folder that holds it (that folder is shipped to the workers), or install it "
                                f"on every node") from None
            raise ChunkError("a worker actor, starting up,", str(e)) from None
        self.worker_info = ([self.local.ping()] if self.local is not None else []) + answers
        self._placed()

    def _placed(self, index: int | None = None, info: dict | None = None) -> None:
        """Record where worker `index` now runs (None: all of them, as `worker_info` says), and the
        order chunks are handed out in: grouped by node, the driver's node first (node_fold.py)."""
        if index is not None:
            self.worker_info[index] = info
        driver_node = self.ray.get_runtime_context().get_node_id()
        self.order = node_order([i.get("node_id") or driver_node for i in self.worker_info], driver_node)

    def _open_channel(self, index: int, info: dict) -> None:
        """A compiled channel to actor `index`, described by its `ping` answer (compiled.py's `Channels`)."""
        if self.workers[index] is not LOCAL:
            self.channels.open(index, self.workers[index], info.get("node_id"))

    @property
    def compiled(self) -> bool:
        """Whether actors on the driver's node may still be reached through compiled channels."""
        return self.channels.enabled

    def close_channels(self) -> None:
        """Close every compiled channel: calls to the workers go as ordinary actor calls."""
        self.channels.close_all()

    # -- the four driver operations ------------------------------------------------------------
    def params_handle(self) -> Any:
        return self._handle

    def call_params(self, handle: tuple[int, np.ndarray]) -> Any:
        """The synchronous (version, flat) parameters as an ordinary actor call takes them: small vectors
        travel inline with the call, larger ones through one object-store put per version, made on first
        use."""
        if handle[1].nbytes <= INLINE_BYTES:
            return handle
        if self._put is None or self._put[0] is not handle:
            self._put = (handle, self.ray.put(handle))
        return self._put[1]

    @property
    def version(self) -> int:
        return self._version

    def apply(self, mean_update: np.ndarray, step: int) -> Any:
        self._version += 1
        if self.local_server:
            self._handle = self.server.apply(mean_update, step)
        else:
            self._handle = self.server.apply.remote(mean_update, step)
        return self._handle

    def state(self) -> dict:
        return self.server.state_dict() if self.local_server else self.ray.get(self.server.state_dict.remote())

    def load_state(self, state: dict) -> None:
        self._version = int(state["version"])
        if self.local_server:
            self.server.load_state_dict(state)
            self._handle = self.server.params()
        else:
            self.ray.get(self.server.load_state_dict.remote(state))
            self._handle = self.server.params.remote()

    def shutdown(self) -> None:
        from meta_dist.runtime import placement

        self.close_channels()
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
        live = [i for i in self.order if self.alive[i]] or self.order
        if self.local is not None and len(live) > 1:
            even = round(len(chunks) / len(live))
            share = self.driver_share.choose(len(chunks), even)
            return [(0, chunks[:share])] + self._split(chunks[share:], live[1:])
        return self._split(chunks, live)

    def _split(self, chunks: list[Chunk], live: list[int]) -> list[tuple[int, list[Chunk]]]:
        return split_by_weight(chunks, live, self.weights)

    def mark_lost(self, index: int) -> None:
        """Stop handing chunks to a lost worker until its restarted actor answers a ping."""
        self.channels.close(index)
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
                info = self.ray.get(ref)
                self.alive[index] = True
                self._placed(index, info)  # a restarted actor may run on another node
                log.warning("worker %d is back", index)
                self._open_channel(index, info)
            except self.ray.exceptions.RayError:
                self._revival[self.workers[index].ping.remote()] = index

    def run_step(self, handle: tuple[int, np.ndarray], chunks: list[Chunk]) -> Partial:
        """One synchronous step's chunks on the live workers, at the (version, flat) parameters `handle`,
        summed in chunk order: node by node where the workers span nodes (node_fold.py), else here.
        `ingress` then holds the (updates, bytes) that reached the driver from actors."""
        if self._fold_pause == 0 and all(self.alive) and self.spans_nodes:
            started, groups = time.perf_counter(), self._partition(chunks)
            partial = NodeFoldStep(self, handle, groups).run()
            if partial is not None:
                from_actors = any(group and not self.is_local(i) for i, group in groups)
                self.ingress = (1, getattr(partial.total, "nbytes", 0)) if from_actors else (0, 0)
                self.folded_steps += 1
                self._record_share(groups, len(chunks), started)
                return partial
            self._fold_pause = FOLD_PAUSE_STEPS
        self._fold_pause = max(0, self._fold_pause - 1)
        results = self.run_chunks(handle, chunks)
        remote = [r for r in results if not (self.local is not None and r.worker_id == 0)]
        self.ingress = (len(remote), sum(r.update.nbytes for r in remote))
        return fold(None, results)

    @property
    def spans_nodes(self) -> bool:
        return len({info.get("node_id") for info in self.worker_info}) > 1

    def run_chunks(self, handle: tuple[int, np.ndarray], chunks: list[Chunk]) -> list[ChunkResult]:
        """A step's chunks on the live workers, one call per worker, each chunk's result back at the
        driver, in chunk order, with backups and re-dispatch (step_runner.py)."""
        started = time.perf_counter()
        groups = self._partition(chunks)
        fast = all(i in self.channels for i, group in groups if group and not self.is_local(i))
        runner = StepRunner(self, handle, chunks)
        for i, group in groups:
            if group:
                runner.submit(i, group, fast)
        results = runner.run()
        if fast:
            self.channels.weigh(runner.channel_wait_s)
        ledger = runner.ledger
        self.lost_workers += ledger.lost_workers
        self.backup_tasks += ledger.backups
        if not ledger.faulted:  # a fault's step says nothing about the driver's share
            self._record_share(groups, len(chunks), started)
        return results

    def _record_share(self, groups: list[tuple[int, list[Chunk]]], num_chunks: int, started: float) -> None:
        """Where the driver computes beside actors, the time a step took with the driver's share."""
        if self.local is not None and len(groups) > 1:
            self.driver_share.record(num_chunks, len(groups[0][1]), time.perf_counter() - started)

    def is_local(self, index: int) -> bool:
        """Whether worker `index` is the driver's own, in-process worker."""
        return self.workers[index] is LOCAL

    def get_all(self, refs: list) -> list:
        """Values of `refs` in one call; None for each if any failed (then fetched one by one)."""
        try:
            return self.ray.get(refs)
        except self.ray.exceptions.RayError:
            return [None] * len(refs)

    def observe(self, index: int, results: list[ChunkResult]) -> None:
        """Track tasks/s per worker so that, on mixed CPU/GPU jobs, faster workers get more chunks.

        Homogeneous workers keep equal shares: measured rates only add noise there.
        """
        tasks = sum(r.num_tasks for r in results)
        busy_s = sum(r.compute_s for r in results)
        if self.config.runtime.num_gpu_workers and busy_s > 0 and tasks:
            self.weights[index] = 0.7 * self.weights[index] + 0.3 * tasks / busy_s
