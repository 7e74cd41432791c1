"""The synchronous step's recovery policy on plain data, with a fake clock: no Ray, milliseconds."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from meta_dist.runtime.ledger import StepLedger, StepStalled, next_live


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
                      num_workers=workers, clock=clock), clock


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
    book, clock = ledger(chunk_timeout_s=10.0)
    sent = book.dispatch(0, [0, 1])
    clock.now = 10.0
    assert book.overdue(sent) == []  # not past the timeout yet
    clock.now = 10.5
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
