"""Placement decisions, tested without a cluster: resources per worker, worker counts, and how
chunks are shared between workers of different speeds (the GPU path, exercised on CPU), and when a run
gives up its compiled channels."""
from types import SimpleNamespace

import pytest

from meta_dist import config as C
from meta_dist.errors import UserError
from meta_dist.runtime import placement
from meta_dist.runtime.backend import RayBackend
from meta_dist.runtime.wire import Chunk, ChunkResult


def cfg(*overrides):
    return C.validate(C.load(None, list(overrides)))


def test_gpu_workers_come_first_and_take_fractions():
    c = cfg("runtime.num_workers=5", "runtime.num_gpu_workers=4", "runtime.num_gpus_per_worker=0.25")
    res = [placement.worker_resources(c, i) for i in range(5)]
    assert [r["num_gpus"] for r in res] == [0.25, 0.25, 0.25, 0.25, 0]
    assert placement.resolve_num_workers(c, {"CPU": 8, "GPU": 1}) == 5


@pytest.fixture(autouse=True)
def no_ray_address(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


@pytest.mark.parametrize("overrides, cluster, expected", [
    ([], {"CPU": 2}, 2),
    (["runtime.threads_per_worker=2"], {"CPU": 8}, 4),
    (["runtime.num_workers=3"], {"CPU": 3}, 3),
])
def test_worker_count_fills_the_cluster_by_default(overrides, cluster, expected):
    assert placement.resolve_num_workers(cfg(*overrides), cluster) == expected


@pytest.mark.parametrize("overrides, cluster, expected", [
    ([], {"CPU": 1}, 2),  # the local Ray of a 2-core machine has 1 CPU: the driver (worker 0) and one actor
    (["runtime.num_workers=3"], {"CPU": 2}, 3),
    (["runtime.driver_worker=false"], {"CPU": 1}, 1),
])
def test_a_computing_driver_counts_as_one_worker(overrides, cluster, expected):
    session = placement.RaySession(owned=True, driver_cpus=1)  # a local Ray of a 2-core machine
    assert placement.resolve_num_workers(cfg(*overrides), cluster, session) == expected


@pytest.mark.parametrize("overrides, holds_back, computes", [
    ([], True, True),
    (["runtime.driver_worker=false"], False, False),
    (["runtime.mode=async"], False, False),
    (["runtime.backend=local"], False, False),
    # Joining a cluster, whose CPUs (the driver's node's included) belong to Ray, nothing is held back; a
    # driver with CPUs of its own there (a Tune trial's bundle) still computes.
    (["runtime.address=auto"], False, True),
    (["runtime.num_workers=2", "runtime.num_gpu_workers=1", "runtime.num_gpus_per_worker=1"], False, False),
])
def test_the_driver_computes_in_sync_cpu_mode_on_cpus_of_its_own(overrides, holds_back, computes):
    assert placement.driver_may_compute(cfg(*overrides)) is holds_back  # CPUs held back from a local Ray
    assert not placement.driver_computes(cfg(*overrides), placement.RaySession())  # a Ray someone else started
    own = placement.RaySession(owned=True, driver_cpus=1)
    assert placement.driver_computes(cfg(*overrides), own) is computes


def test_a_ray_tune_trial_computes_on_the_cpu_of_its_own_bundle(ray_local):
    """A Ray task or actor holding CPUs (a Tune trial's first bundle) is a driver with CPUs of its own."""
    session = ray_local.get(ray_local.remote(num_cpus=1)(placement.init_ray).remote(cfg()))
    assert session == placement.RaySession(owned=False, driver_cpus=1.0)
    assert placement.driver_computes(cfg(), session)
    assert placement.init_ray(cfg()) == placement.RaySession()  # this test process: a plain driver


def test_a_job_on_a_cluster_never_has_the_driver_compute(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert not placement.driver_may_compute(cfg())


@pytest.mark.parametrize("overrides, cluster, message", [
    (["runtime.num_workers=64"], {"CPU": 2}, "need 64 CPUs but the Ray cluster has 2"),
    (["runtime.num_workers=2", "runtime.num_gpu_workers=1", "runtime.num_gpus_per_worker=1"], {"CPU": 4},
     "need 1 GPUs but the Ray cluster has 0"),
])
def test_requests_that_can_never_be_placed_are_user_errors(overrides, cluster, message):
    with pytest.raises(UserError, match=message):
        placement.resolve_num_workers(cfg(*overrides), cluster)


def test_gpu_request_without_gpu_workers_is_rejected_by_validation():
    with pytest.raises(UserError, match="num_gpus_per_worker"):
        cfg("runtime.num_gpu_workers=1")


def _backend_with(weights, alive=None):
    backend = RayBackend.__new__(RayBackend)  # the dispatch policy only, no cluster
    backend.config = cfg("runtime.num_gpu_workers=1", "runtime.num_gpus_per_worker=0.5")
    backend.workers = [object()] * len(weights)
    backend.local = None
    from meta_dist.runtime.partition import DriverShare

    backend.driver_share = DriverShare()
    backend.weights = list(weights)
    backend.alive = alive or [True] * len(weights)
    backend.order = list(range(len(weights)))
    backend._revival = {}
    return backend


def test_faster_workers_get_proportionally_more_chunks():
    chunks = [Chunk(1, i, ()) for i in range(8)]
    groups = _backend_with([30.0, 10.0])._partition(chunks)
    assert [(i, [c.chunk_id for c in g]) for i, g in groups] == [(0, [0, 1, 2, 3, 4, 5]), (1, [6, 7])]


def test_throughput_is_learned_from_observed_chunk_times():
    backend = _backend_with([1.0, 1.0])
    for _ in range(20):
        backend.observe(0, [ChunkResult(1, 0, 0, None, 30, compute_s=0.1)])  # a GPU worker: 300 tasks/s
        backend.observe(1, [ChunkResult(1, 1, 0, None, 30, compute_s=1.0)])  # a CPU worker: 30 tasks/s
    assert backend.weights[0] / backend.weights[1] == pytest.approx(10, rel=0.05)


def test_lost_workers_get_no_chunks_until_they_return():
    chunks = [Chunk(1, i, ()) for i in range(4)]
    groups = _backend_with([1.0, 1.0, 1.0], alive=[True, False, True])._partition(chunks)
    assert [i for i, _ in groups] == [0, 2] and sum(len(g) for _, g in groups) == 4


def test_a_computing_driver_is_named_when_its_actors_cannot_be_placed():
    session = placement.RaySession(owned=True, driver_cpus=1)
    with pytest.raises(UserError, match=r"2 worker actors x 1 threads \(worker 0 is the driver itself\) need 2 CPUs"):
        placement.resolve_num_workers(cfg("runtime.num_workers=3"), {"CPU": 1}, session)


def _drive(tuner, step_s: dict[int, float], steps: int, num_chunks: int = 2, even: int = 1) -> list[int]:
    """Shares the tuner picks over `steps` steps whose time depends only on the share."""
    chosen = []
    for _ in range(steps):
        share = tuner.choose(num_chunks, even)
        chosen.append(share)
        tuner.record(num_chunks, share, step_s[share])
    return chosen


def test_driver_share_times_the_shares_in_turn_then_keeps_the_fastest():
    from meta_dist.runtime.partition import DriverShare

    tuner = DriverShare(warmup=2, warmup_s=0.0, trials=3, refresh=1000, margin=1.25)
    step_s = {0: 0.0050, 1: 0.0052, 2: 0.0055}  # close: nothing is dropped early
    chosen = _drive(tuner, step_s, 2 + 3 * 3 + 4)
    assert chosen[:2] == [1, 1]  # warm-up at the even share
    assert chosen[2:11] == [0, 1, 2] * 3  # one step each, in turn, so drift hits every share alike
    assert tuner.settled and chosen[11:] == [0, 0, 0, 0]


def test_driver_share_drops_clear_losers_after_three_rounds():
    from meta_dist.runtime.partition import DriverShare

    tuner = DriverShare(warmup=0, warmup_s=0.0, trials=5, refresh=1000, margin=1.25)
    chosen = _drive(tuner, {0: 0.010, 1: 0.004, 2: 0.006}, 9 + 3)  # shares 0 and 2 are >= 1.5x slower
    assert chosen[:9] == [0, 1, 2] * 3 and tuner.settled and chosen[9:] == [1, 1, 1]


def test_driver_share_warms_up_for_a_minimum_time_at_the_even_share():
    from meta_dist.runtime.partition import DriverShare

    tuner = DriverShare(warmup=2, warmup_s=0.05, trials=1, refresh=1000)
    chosen = _drive(tuner, {0: 0.01, 1: 0.01, 2: 0.01}, 7)
    assert chosen == [1, 1, 1, 1, 1, 0, 1]  # 5 steps of 10 ms reach 50 ms


def test_a_step_without_a_timing_repeats_its_share():
    from meta_dist.runtime.partition import DriverShare

    tuner = DriverShare(warmup=0, warmup_s=0.0, trials=2, refresh=1000)
    assert tuner.choose(2, even=1) == 0
    assert tuner.choose(2, even=1) == 0  # the faulted step recorded nothing: share 0 again
    tuner.record(2, 0, 0.01)
    assert tuner.choose(2, even=1) == 1


def test_driver_share_stays_fixed_until_refresh_then_is_timed_again():
    from meta_dist.runtime.partition import DriverShare

    tuner = DriverShare(warmup=0, warmup_s=0.0, trials=1, refresh=5)
    first = _drive(tuner, {0: 3.0, 1: 2.0, 2: 1.0}, 3 + 4)
    assert first == [0, 1, 2, 2, 2, 2, 2]
    # The machine's load changes: the choice holds until `refresh` steps have passed, then all are re-timed.
    second = _drive(tuner, {0: 1.0, 1: 2.0, 2: 3.0}, 1 + 3 + 2)
    assert second == [2, 0, 1, 2, 0, 0]


def test_with_the_driver_computing_the_actors_split_what_it_leaves():
    backend = _backend_with([1.0, 1.0, 1.0])
    backend.local = object()
    backend.driver_share.warmup, backend.driver_share.warmup_s = 0, 0.0  # type: ignore[attr-defined]
    chunks = [Chunk(1, i, ()) for i in range(6)]
    groups = backend._partition(chunks)  # the first untimed share: the driver keeps none
    assert [(i, [c.chunk_id for c in g]) for i, g in groups] == [(0, []), (1, [0, 1, 2]), (2, [3, 4, 5])]


def test_channels_turn_off_after_three_long_waits_running():
    """Compiled channels are given up once SPIN_STEPS steps running have each waited SPIN_WAIT_S or more on
    their reads; a short wait in between starts the count again."""
    from meta_dist.runtime import compiled

    closed = []
    channels = compiled.Channels(ray=None, enabled=True, setup_timeout_s=1.0)
    channels[1] = SimpleNamespace(close=lambda: closed.append(1))
    long, short = compiled.SPIN_WAIT_S, compiled.SPIN_WAIT_S / 10
    for waited in (long, long, short, long, long):
        channels.weigh(waited)
    assert channels.enabled and 1 in channels and not closed
    channels.weigh(long)
    assert not channels.enabled and channels == {} and closed == [1]
