"""Running one synchronous step's chunks on a RayBackend's workers, whichever transport reaches each:
the driver's own worker (in-process), a compiled channel, or an ordinary actor call.

`StepRunner` sends, waits and collects; every decision (what a lost worker's chunks become, when a chunk
gets a backup, when the step gives up) is the `StepLedger`'s, on plain data (ledger.py).
"""
from __future__ import annotations

import logging
import time
from typing import Any

from meta_dist.errors import ChunkError, UserError
from meta_dist.runtime.compiled import WAIT_FOREVER
from meta_dist.runtime.ledger import Dispatch, StepLedger, next_live
from meta_dist.runtime.wire import Chunk, ChunkResult

log = logging.getLogger("meta_dist")


def raise_cause(error: Exception):
    """Raise the worker's own exception (a ChunkError with its traceback, or a UserError) rather than
    Ray's wrapper of it, whose text repeats the traceback; anything else as it came."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, (ChunkError, UserError)):
        raise cause from None
    raise error


class StepRunner:
    def __init__(self, backend, handle: Any, chunks: list[Chunk]):
        self.backend, self.ray, self.handle = backend, backend.ray, handle
        r = backend.config.runtime
        self.chunks = {c.chunk_id: c for c in chunks}
        self.ledger = StepLedger(self.chunks, chunk_timeout_s=r.chunk_timeout_s, stall_timeout_s=r.stall_timeout_s,
                                 alive=backend.alive)
        self.pending: dict[Any, Dispatch] = {}  # ordinary calls: object ref -> what it carries
        self.compiled: list[tuple[Dispatch, Any]] = []  # channel submissions, in order
        self.local: list[Chunk] = []  # the driver's own share, computed once the actors have theirs
        self.channel_wait_s = 0.0  # time spent in compiled-channel reads (RayBackend weighs it)
        ex = self.ray.exceptions
        self.lost_errors = (ex.RayActorError, ex.WorkerCrashedError, ex.ObjectLostError, ex.RayChannelError)

    def submit(self, index: int, group: list[Chunk], fast: bool = False) -> None:
        """Send `group` to worker `index`: in-process, through its compiled channel (`fast`), or by call."""
        b = self.backend
        dispatch = self.ledger.dispatch(index, (c.chunk_id for c in group))
        if b.is_local(index):
            self.local.extend(group)
        elif fast:
            try:
                self.compiled.append((dispatch, b.channels[index].submit(self.handle, group)))
            except self.lost_errors as e:  # the actor died since the last step: "Channel closed"
                self._lost(dispatch, e)
        else:
            self.pending[b.workers[index].run_chunks.remote(b.call_params(self.handle), group)] = dispatch

    def run(self) -> list[ChunkResult]:
        """Until every chunk has a result: the driver's share, then channel results, then ordinary calls
        (all at once: one round trip per step when nothing fails), backing up overdue chunks."""
        ledger = self.ledger
        while not ledger.done:
            if self.local:
                self._accept(0, self.backend.local.run_chunks(self.handle, self.local))
                self.local = []
            elif self.compiled:
                self._collect_compiled()
            else:
                self._collect_calls()
                ledger.check_progress()
                for dispatch in list(self.pending.values()):
                    slow = ledger.overdue(dispatch)
                    if slow:
                        self._back_up(dispatch, slow)
        for ref in self.pending:  # stragglers whose chunks a backup answered
            self.ray.cancel(ref, force=False)
        return ledger.ordered()

    def _collect_calls(self) -> None:
        timeout = min(1.0, self.ledger.chunk_timeout_s)
        ready, _ = self.ray.wait(list(self.pending), num_returns=len(self.pending), timeout=timeout)
        for ref, values in zip(ready, self.backend.get_all(ready)):
            dispatch = self.pending.pop(ref)
            try:
                self._accept(dispatch.worker, self.ray.get(ref) if values is None else values)
            except self.ray.exceptions.RayTaskError as e:
                raise_cause(e)
            except self.lost_errors as e:
                self._lost(dispatch, e)

    def _collect_compiled(self) -> None:
        """Each channel's results, waited for until its chunks' deadline. A late result would block the
        channel's next read, so a worker past the deadline is restarted and its chunks backed up."""
        b, ray = self.backend, self.ray
        started = time.perf_counter()
        for dispatch, ref in self.compiled:
            deadline = dispatch.sent_at + self.ledger.allowance(dispatch) - self.ledger.clock()
            alone = not self.ledger.can_back_up(dispatch.worker)  # nobody to back up to: wait, as calls do
            try:
                self._accept(dispatch.worker, b.channels[dispatch.worker].result(
                    ref, WAIT_FOREVER if alone else max(0.0, deadline)))
            except ray.exceptions.RayTaskError as e:
                raise_cause(e)
            except ray.exceptions.RayChannelTimeoutError:
                ray.kill(b.workers[dispatch.worker], no_restart=False)  # before the teardown, which would wait
                b.mark_lost(dispatch.worker)
                self._back_up(dispatch, self.ledger.back_up(dispatch))
            except self.lost_errors as e:
                self._lost(dispatch, e)
        self.compiled = []
        self.channel_wait_s += time.perf_counter() - started

    def _accept(self, index: int, values: list[ChunkResult]) -> None:
        self.ledger.accept(values)
        if not self.backend.is_local(index):
            self.backend.observe(index, values)

    def _lost(self, dispatch: Dispatch, error: Exception) -> None:
        b = self.backend
        b.mark_lost(dispatch.worker)
        target = next_live(dispatch.worker, b.alive)
        missing = self.ledger.lost(dispatch)
        log.warning("worker %d lost during step %d (%s); re-dispatching %d chunk(s) to worker %d", dispatch.worker,
                    self.chunks[dispatch.chunk_ids[0]].step, type(error).__name__, len(missing), target)
        if missing:
            self.submit(target, [self.chunks[c] for c in missing])

    def _back_up(self, dispatch: Dispatch, slow: list[int]) -> None:
        if not slow:
            return
        target = next_live(dispatch.worker, self.backend.alive)
        log.warning("chunk(s) %s of step %d exceeded %g s (%d x runtime.chunk_timeout_s) on worker %d; backup on "
                    "worker %d", slow, self.chunks[slow[0]].step, self.ledger.allowance(dispatch),
                    len(dispatch.chunk_ids), dispatch.worker, target)
        self.submit(target, [self.chunks[c] for c in slow])
