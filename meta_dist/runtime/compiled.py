"""A Ray Compiled Graph per worker actor: the synchronous step's fast path to actors on the driver's node.

An ordinary actor call goes through task submission, the raylet and gRPC: measured here at 0.8 ms for
an empty round trip, as much as half a sinusoid chunk's compute. A compiled graph (Ray's
`experimental_compile`) sets the call up once; afterwards each execution writes the arguments into a
shared-memory channel that the actor's execution loop reads, and the result comes back the same way:
0.07 ms for a small round trip, 0.4 ms with a 480 KB parameter vector (measured on the 2-vCPU machine).

One graph per actor, not one for all: a graph's outputs are read together, so a single graph could
not tell which actor is late or lost. Each channel here is its own fault domain; `RayBackend` tears
down the channel of a worker it loses, sends the worker's chunks through ordinary calls (which carry
the fault handling), and compiles a new channel once the restarted actor answers.

`Channels` holds a run's channels, one per actor, and decides when the run stops using them.
"""
from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("meta_dist")

# Ray logs every teardown at INFO ("Tearing down compiled DAG", one line per actor): routine here.
logging.getLogger("ray.dag.compiled_dag_node").setLevel(logging.WARNING)

WAIT_FOREVER = -1
"""The channel timeout that blocks until the result (Ray's default gives up after 10 s)."""

# Ray's channel reader polls (sched_yield) while it waits, taking CPU from the workers beside it: 20% of a
# core on Meta-World's 3 s chunks (2 vCPUs), where an ordinary call sleeps and costs ~1 ms a step. Steps
# whose channel reads wait this long, this many times running, switch a run to ordinary calls.
SPIN_WAIT_S, SPIN_STEPS = 0.1, 3


class CompiledChannel:
    """`actor.run_chunks(params, chunks)` as a compiled graph of one actor."""

    def __init__(self, ray, actor, setup_timeout_s: float):
        from ray.dag import InputNode

        self.ray = ray
        with InputNode() as inp:
            graph = actor.run_chunks.bind(inp[0], inp[1])
        self.graph = graph.experimental_compile()
        try:
            # The first execution registers the channel readers; until then another channel's get can
            # stall behind this one (measured), so every channel has run once before it is used.
            ray.get(self.graph.execute(None, []), timeout=setup_timeout_s)
        except BaseException:
            self.close()
            raise

    def submit(self, params: Any, chunks: list) -> Any:
        """Start `run_chunks` on the actor; returns the reference to pass to `result` (exactly once)."""
        return self.graph.execute(params, chunks)

    def result(self, ref: Any, timeout_s: float) -> list:
        """The chunk results. Raises RayChannelTimeoutError after `timeout_s` (WAIT_FOREVER: never);
        the actor's late result would then block the channel's next read, so its caller restarts the
        actor and closes the channel. Raises RayActorError / RayChannelError if the actor is lost."""
        return self.ray.get(ref, timeout=timeout_s)

    def close(self) -> None:
        try:
            self.graph.teardown()
        except Exception as e:  # a lost actor's graph may already be torn down by Ray
            log.debug("compiled channel teardown: %s", e)


class Channels(dict):
    """Worker index -> its open `CompiledChannel`. Channels serve only where every actor shares the
    driver's node (a step goes one way or the other, and a channel to a remote actor would cross
    nodes), so an actor elsewhere, a channel that fails to build, or steps that keep waiting on their
    reads turn them off for the rest of the run: ordinary actor calls from then on."""

    def __init__(self, ray, enabled: bool, setup_timeout_s: float):
        super().__init__()
        self.ray, self.enabled, self.setup_timeout_s = ray, enabled, setup_timeout_s
        self._long_waits = 0  # steps running whose channel reads waited SPIN_WAIT_S or more

    def open(self, index: int, actor: Any, node_id: str | None) -> None:
        """A channel to worker `index`'s `actor`, which runs on node `node_id`."""
        if not self.enabled:
            return
        if node_id != self.ray.get_runtime_context().get_node_id():
            log.info("worker %d runs on another node than the driver: ordinary actor calls", index)
            self.turn_off()
            return
        try:
            self[index] = CompiledChannel(self.ray, actor, self.setup_timeout_s)
        except Exception as e:
            log.warning("compiled channel to worker %d failed (%s: %s); using ordinary actor calls",
                        index, type(e).__name__, e)
            self.turn_off()

    def close(self, index: int) -> None:
        channel = self.pop(index, None)
        if channel is not None:
            channel.close()

    def close_all(self) -> None:
        for index in list(self):
            self.close(index)

    def turn_off(self) -> None:
        self.enabled = False
        self.close_all()

    def weigh(self, waited_s: float) -> None:
        """Ordinary calls for the rest of the run once SPIN_STEPS steps running have waited SPIN_WAIT_S or
        more in channel reads: chunks that long gain nothing from the channel's faster round trip."""
        self._long_waits = self._long_waits + 1 if waited_s >= SPIN_WAIT_S else 0
        if self._long_waits >= SPIN_STEPS and self.enabled:
            log.info("the last step waited %.2f s on compiled channels: ordinary actor calls from now on "
                     "(a channel's reader polls a core while it waits)", waited_s)
            self.turn_off()
