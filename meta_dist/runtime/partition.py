"""Who computes which chunks of a step: contiguous groups sized by each worker's measured speed, and the
share the driver keeps when it computes beside its actors (chosen by timing real steps). Plain data, no Ray.
"""
from __future__ import annotations

from typing import Sequence, TypeVar

import numpy as np

T = TypeVar("T")


def split_by_weight(chunks: Sequence[T], live: list[int], weights: list[float]) -> list[tuple[int, list[T]]]:
    """Contiguous groups of `chunks`, one per live worker, sized in proportion to its weight (the last
    takes the rounding remainder)."""
    total = sum(weights[i] for i in live)
    groups, start = [], 0
    for n, i in enumerate(live):
        end = len(chunks) if n == len(live) - 1 else start + round(len(chunks) * weights[i] / total)
        groups.append((i, list(chunks[start:end])))
        start = end
    return groups


class DriverShare:
    """How many of a step's chunks the driver keeps (the actors split the rest), chosen by timing the
    real steps.

    After a warm-up at the even share (`warmup` steps and `warmup_s` seconds: the first steps after
    Ray starts or an actor joins run slow, enough to make the fastest share look the slowest), the
    candidate shares (none, some or all of the chunks) take turns, one step each, for `trials` rounds.
    From the third round on, a share whose fastest step is slower than `margin` times the best mean is
    dropped; at the end the fastest mean is kept, and stays fixed for `refresh` steps, after which all
    shares are timed again, since load changes. Taking turns spreads the machine's drift over every
    share alike; dropping clear losers keeps the timing cheap; the mean, not the median, because
    throughput is the mean and shares that wait on actors have the longer tails (a median-chosen split
    ran 3.46 ms mean against 3.30 for the driver alone, with equal medians); a fixed choice cannot
    wander (a share re-judged on every step against stale timings of the others can stay on a slower
    choice for hundreds of steps).

    Timing whole steps captures what a model of compute rates would miss: the round trip to an actor,
    and the driver and the actors slowing each other on shared cores. On sinusoid the driver and its
    actor split the chunks over compiled channels; over ordinary actor calls the driver keeps them all."""

    def __init__(self, warmup: int = 10, warmup_s: float = 2.0, trials: int = 5, refresh: int = 1000,
                 margin: float = 1.25):
        self.warmup, self.warmup_s, self.trials, self.refresh, self.margin = warmup, warmup_s, trials, refresh, margin
        self.steps = 0
        self.warm_s = 0.0  # recorded seconds of warm-up steps
        self.num_chunks = -1
        self.chosen: int | None = None
        self.chosen_at = 0  # the step whose timing settled `chosen`
        self.order: list[int] = []  # shares still timed, in turn
        self.turn = 0
        self.samples: dict[int, list[float]] = {}

    @property
    def warming(self) -> bool:
        return self.steps <= self.warmup or self.warm_s < self.warmup_s

    @property
    def settled(self) -> bool:
        return self.chosen is not None

    def _start_trial(self, num_chunks: int) -> None:
        self.num_chunks, self.chosen, self.turn = num_chunks, None, 0
        self.order = list(range(num_chunks + 1))
        self.samples = {share: [] for share in self.order}

    def choose(self, num_chunks: int, even: int) -> int:
        self.steps += 1
        if self.warming:
            return even
        if num_chunks != self.num_chunks:
            self._start_trial(num_chunks)
        if self.chosen is not None:
            if self.steps - self.chosen_at <= self.refresh:
                return self.chosen
            self._start_trial(num_chunks)
        return self.order[self.turn]

    def record(self, num_chunks: int, share: int, seconds: float) -> None:
        """The time of a fault-free step run at `share` (steps under faults are not recorded, so the
        same share is tried again)."""
        if self.warming:
            self.warm_s += seconds
            return
        if self.chosen is not None or num_chunks != self.num_chunks or share != self.order[self.turn]:
            return
        self.samples[share].append(seconds)
        self.turn += 1
        if self.turn < len(self.order):
            return
        self.turn = 0
        means = {s: float(np.mean(self.samples[s])) for s in self.order}
        best = min(means.values())
        if len(self.samples[self.order[0]]) >= 3:
            self.order = [s for s in self.order if min(self.samples[s]) <= self.margin * best]
        if len(self.order) == 1 or len(self.samples[self.order[0]]) >= self.trials:
            self.chosen = min(self.order, key=means.__getitem__)
            self.chosen_at = self.steps
