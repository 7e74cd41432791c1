"""The synchronous step's recovery policy on plain data, with a fake clock: no Ray, milliseconds."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from meta_dist.runtime.ledger import StaleSyncLedger, StepLedger, StepStalled, next_live


@dataclass(frozen=True)
class Result:
    chunk_id: int
    worker: int = 0


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def ledger(num_chunks=4, workers=2, chunk_timeout_s=120.0, stall_timeout_s=600.0):
    clock = Clock()
    return StepLedger(range(num_chunks), chunk_timeout_s=chunk_timeout_s, stall_timeout_s=stall_timeout_s,
                      alive=[True] * workers, clock=clock), clock


def test_the_first_result_of_a_chunk_wins():
    book, _ = ledger()
    assert book.accept([Result(0, worker=1), Result(1, worker=1)]) == 2
    assert book.accept([Result(1, worker=0), Result(2, worker=0)]) == 1  # chunk 1's twin is dropped
    book.accept([Result(3)])
    assert book.done and [r.worker for r in book.ordered()] == [1, 1, 0, 0]


def test_a_lost_worker_hands_on_exactly_its_unanswered_chunks():
    book, _ = ledger()
    sent = book.dispatch(1, [2, 3])
    book.accept([Result(2)])  # answered by a backup before the loss was seen
    assert book.lost(sent) == [3]
    assert (book.lost_workers, book.redispatched, book.backups) == (1, 1, 0)


def test_an_overdue_chunk_gets_one_backup_and_never_a_second():
    """A call of two chunks has chunk_timeout_s for each: its worker computes them one after another."""
    book, clock = ledger(chunk_timeout_s=10.0)
    sent = book.dispatch(0, [0, 1])
    assert book.allowance(sent) == 20.0 and book.allowance(book.dispatch(1, [2])) == 10.0
    clock.now = 20.0
    assert book.overdue(sent) == []  # not past the call's allowance yet
    clock.now = 20.5
    book.accept([Result(0)])
    assert book.overdue(sent) == [1]
    clock.now = 100.0
    assert book.overdue(sent) == [] and book.backups == 1


def test_a_lone_worker_never_backs_up():
    book, clock = ledger(workers=1, chunk_timeout_s=10.0)
    sent = book.dispatch(0, [0, 1, 2, 3])
    clock.now = 1e6
    assert book.overdue(sent) == [] and book.backups == 0
    book.check_progress()  # no fault: it is waited for, however long


def test_the_last_live_worker_is_waited_for_once_its_peers_are_lost():
    alive, clock = [True, True], Clock()
    book = StepLedger(range(2), chunk_timeout_s=10.0, stall_timeout_s=600.0, alive=alive, clock=clock)
    sent = book.dispatch(1, [0])
    clock.now = 50.0  # overdue
    alive[0] = False  # the runner marks worker 0 lost in the list the ledger reads
    assert not book.can_back_up(1) and book.overdue(sent) == [] and book.backups == 0
    alive[0] = True  # restarted
    assert book.can_back_up(1) and book.overdue(sent) == [0]


def test_a_faulted_step_gives_up_only_after_the_stall_timeout_without_progress():
    book, clock = ledger(stall_timeout_s=300.0)
    book.lost(book.dispatch(1, [2, 3]))
    clock.now = 299.0
    book.check_progress()
    clock.now = 301.0
    with pytest.raises(StepStalled, match="no worker completed a chunk for 301 s"):
        book.check_progress()


def test_every_result_resets_the_stall_timer():
    """A step still completing chunks after a loss is not given up on (the step runner hands results of
    every path to `accept`: the driver's share, compiled channels, actor calls)."""
    book, clock = ledger(num_chunks=6, stall_timeout_s=300.0)
    book.lost(book.dispatch(1, [4, 5]))
    for t, chunk in ((200.0, 0), (400.0, 1), (600.0, 2)):  # one result every 200 s
        clock.now = t
        book.accept([Result(chunk)])
        book.check_progress()
    clock.now = 850.0
    book.check_progress()  # 250 s since the last result
    clock.now = 901.0
    with pytest.raises(StepStalled):
        book.check_progress()


def test_the_next_live_worker_skips_lost_ones_cyclically():
    assert next_live(1, [True, False, True]) == 2
    assert next_live(2, [True, False, True]) == 0
    assert next_live(0, [False, False]) == 1  # none alive: the next one, which may come back


# -- asynchronous mode ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Computed:
    chunk_id: int
    version: int
    num_tasks: int = 5


def ssp(staleness=1, meta_batch_size=10):
    made = []

    def chunks_of(step):
        made.append(step)
        return [(step, i) for i in range(3)]
    return StaleSyncLedger(staleness, meta_batch_size, chunks_of, start_step=4), made


def test_chunks_are_handed_out_in_order_and_a_step_is_cut_when_the_queue_runs_dry():
    book, made = ssp()
    assert [book.next_chunk() for _ in range(4)] == [(5, 0), (5, 1), (5, 2), (6, 0)]
    assert made == [5, 6]


def test_a_too_stale_result_is_rejected_and_its_chunk_queued_again_at_the_back():
    book, _ = ssp(staleness=1)
    first, second = book.next_chunk(), book.next_chunk()
    book.returned([first, second], [Computed(0, version=3), Computed(1, version=1)], version=3)
    assert [r.chunk_id for r in book.accepted] == [0] and book.stale == 1
    assert list(book.queue) == [(5, 2), second]


def test_a_lost_call_puts_its_chunks_back_at_the_front_in_order():
    book, _ = ssp()
    lost = [book.next_chunk(), book.next_chunk()]
    book.returned(lost, None, version=0)
    assert list(book.queue) == [*lost, (5, 2)] and not book.accepted and book.stale == 0


def test_a_step_commits_once_enough_tasks_are_in_and_counts_restart():
    book, _ = ssp(staleness=2, meta_batch_size=10)
    chunks = [book.next_chunk() for _ in range(3)]
    book.returned(chunks[:1], [Computed(0, version=5)], version=6)
    assert not book.ready
    book.returned(chunks[1:2], [Computed(1, version=4)], version=6)  # 2 behind: within the bound
    book.returned(chunks[2:], [Computed(2, version=3)], version=6)  # 3 behind: rejected
    assert book.ready and book.stale == 1
    accepted, stale, staleness_mean = book.take(version=6)
    assert [r.chunk_id for r in accepted] == [0, 1] and stale == 1 and staleness_mean == (1 + 2) / 2
    assert not book.ready and book.stale == 0 and not book.accepted
