"""The one status line of long operations (meta-training, building a task store) on stderr: redrawn in
place on a terminal, at most twice a second; in a log (a job, CI), a new line at most every 10 s, so logs
stay short. The final line always shows."""
from __future__ import annotations

import sys
import time


class StatusLine:
    def __init__(self, tty_every_s: float = 0.5, log_every_s: float = 10.0):
        self.tty = sys.stderr.isatty()
        self.every_s = tty_every_s if self.tty else log_every_s
        self.t0 = time.monotonic()
        self.last = float("-inf")
        self.open = False  # a redrawn line waits for its newline

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.t0

    def due(self, final: bool = False) -> bool:
        """Whether a line shown now would be printed (callers skip building it otherwise)."""
        return final or time.monotonic() - self.last >= self.every_s

    def show(self, line: str, final: bool = False) -> None:
        if not self.due(final):
            return
        self.last = time.monotonic()
        if self.tty:
            print("\r" + line, end="", file=sys.stderr, flush=True)
            self.open = True
        else:
            print(line, file=sys.stderr, flush=True)
        if final:
            self.close()

    def close(self) -> None:
        if self.open:
            print(file=sys.stderr, flush=True)
            self.open = False


def _rate(per_s: float) -> str:
    """Whole numbers from 10 up, two significant digits below (Meta-World steps take seconds)."""
    return f"{per_s:.0f}" if per_s >= 10 else f"{per_s:.2g}"


class StepProgress:
    """Meta-training: step, loss, tasks/s, ETA."""

    def __init__(self, total: int, start: int):
        self.total, self.start, self.tasks = total, start, 0
        self.line = StatusLine()

    def update(self, step: int, row: dict) -> None:
        self.tasks += row["num_tasks"]
        final = step == self.total
        if not self.line.due(final):
            return
        elapsed = self.line.elapsed_s
        rate = (step - self.start) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - step) / rate if rate > 0 else 0.0
        self.line.show(f"step {step}/{self.total} | loss {row['meta_loss']:.4f} | "
                       f"{_rate(self.tasks / max(elapsed, 1e-9))} tasks/s | ETA {int(eta // 60)}m{int(eta % 60):02d}s", final)

    def close(self) -> None:
        self.line.close()


class CountProgress:
    """`label: n/total images (p%, s)`, called as `progress(done, total)`."""

    def __init__(self, label: str, unit: str = "images"):
        self.label, self.unit = label, unit
        self.line = StatusLine()

    def __call__(self, done: int, total: int) -> None:
        final = done == total
        if self.line.due(final):
            pct = 100 * done // max(total, 1)
            self.line.show(f"{self.label}: {done}/{total} {self.unit} ({pct}%, {self.line.elapsed_s:.0f} s)", final)
