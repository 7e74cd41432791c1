"""The per-step metrics table (metrics.parquet) and the learning curve (curve.png).

Rows are kept in memory and the whole table is rewritten atomically (temporary file, fsync, rename)
at every checkpoint and at the end, so the file on disk always matches the newest checkpoint: after
a crash and `--resume`, steps continue 1..N with no gap and no duplicate.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from meta_dist.fileio import atomic_write

FILE = "metrics.parquet"
COLUMNS = ("step", "num_tasks", "step_time_s", "meta_loss", "wall_time")


class MetricsLog:
    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / FILE
        self.rows: list[dict] = []

    def load(self, up_to_step: int) -> None:
        """Reload rows of a previous session, dropping any beyond the checkpoint being resumed."""
        if self.path.exists():
            table = pq.read_table(self.path)
            self.rows = [r for r in table.to_pylist() if r["step"] <= up_to_step]

    def append(self, row: dict) -> None:
        if self.rows and row["step"] != self.rows[-1]["step"] + 1:
            raise AssertionError(f"metrics step {row['step']} does not follow {self.rows[-1]['step']}")
        self.rows.append(row)

    def flush(self) -> None:
        if not self.rows:
            return
        keys = list(COLUMNS) + sorted({k for r in self.rows for k in r} - set(COLUMNS))
        table = pa.table({k: [r.get(k) for r in self.rows] for k in keys})
        atomic_write(self.path, lambda tmp: pq.write_table(table, tmp))


def plot_curve(run_dir: Path, metric_name: str = "meta_loss") -> Path | None:
    """curve.png: the meta-training loss (smoothed) against the step."""
    path = Path(run_dir) / FILE
    if not path.exists():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = pq.read_table(path, columns=["step", metric_name]).to_pydict()
    steps, values = table["step"], table[metric_name]
    window = max(1, len(steps) // 100)
    smooth = [sum(values[max(0, i - window + 1): i + 1]) / len(values[max(0, i - window + 1): i + 1])
              for i in range(len(values))]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, values, alpha=0.25, label=metric_name)
    ax.plot(steps, smooth, label=f"{metric_name} (moving mean, {window})")
    ax.set_xlabel("meta-step")
    ax.set_ylabel(metric_name)
    if min(values) > 0:
        ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    out = Path(run_dir) / "curve.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
