"""Experiment tracking beside metrics.parquet: TensorBoard event files and MLflow runs.

Both loggers see exactly the rows of metrics.parquet, one per committed meta-step, and the final
evaluation. A resumed run continues the same TensorBoard directory and the same MLflow run without
duplicate steps, each in its tool's own way:

- TensorBoard: everything is flushed before each checkpoint is written, and a resumed writer purges the
  steps after the checkpoint it resumes from (`purge_step`), so TensorBoard shows the resumed values.
- MLflow keeps every logged value, so a step is sent once: a resumed run asks the MLflow run for the
  last step it holds and sends only later ones (in synchronous CPU mode the resumed values are
  bitwise the ones already sent).

Turned on by `logging.tensorboard` / `logging.mlflow` (`--tensorboard` / `--mlflow`); the packages come
with the `tracking` extra.
"""
from __future__ import annotations

import importlib
import json
import shutil
import time
from pathlib import Path

from meta_dist import config as config_mod
from meta_dist.config import Config
from meta_dist.errors import UserError
from meta_dist.fileio import atomic_write_text

EXTRA = "pip install 'meta-dist[tracking]'"
NOT_METRICS = ("step", "wall_time")


def check_available(config: Config) -> None:
    """A logger switched on without its package is a one-line error naming the extra."""
    for on, module, key in ((config.logging.tensorboard, "tensorboard", "logging.tensorboard"),
                            (config.logging.mlflow, "mlflow", "logging.mlflow")):
        if not on:
            continue
        try:
            importlib.import_module(module)
        except ImportError:
            raise UserError(f"{key} is on but {module} is not installed; {EXTRA}, or switch it off") from None


def metric_values(row: dict) -> dict[str, float]:
    """The numeric columns of a metrics row, less its step and clock."""
    return {k: float(v) for k, v in row.items()
            if k not in NOT_METRICS and isinstance(v, (int, float)) and not isinstance(v, bool)}


class TensorBoardLog:
    """Scalars train/KEY per step; eval/METRIC at the evaluated step; the adaptation curve of each
    evaluation as its own TensorBoard run (eval_step<N>, x = adaptation steps)."""

    def __init__(self, run_dir: Path, resume_step: int):
        from torch.utils.tensorboard import SummaryWriter

        self.dir = Path(run_dir) / "tensorboard"
        self.is_new = not any(self.dir.glob("events.out.tfevents.*"))
        self.writer = SummaryWriter(str(self.dir), purge_step=resume_step + 1 if resume_step else None)

    def backfill(self, rows: list[dict]) -> None:
        """Steps of earlier sessions, when this run had no TensorBoard files yet."""
        if self.is_new:
            self.rows(rows)

    def rows(self, rows: list[dict]) -> None:
        for row in rows:
            for key, value in metric_values(row).items():
                self.writer.add_scalar(f"train/{key}", value, row["step"], walltime=row.get("wall_time"))

    def flush(self) -> None:
        self.writer.flush()

    def evaluated(self, result: dict, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        metric, step = result["metric"], result["step"]
        self.writer.add_scalar(f"eval/{metric}", result["mean"], step)
        self.writer.add_scalar(f"eval/{metric}_ci95", result["ci95"], step)
        curve_dir = self.dir / f"eval_step{step}"
        shutil.rmtree(curve_dir, ignore_errors=True)  # an evaluation repeated at the same step replaces it
        with SummaryWriter(str(curve_dir)) as curve:
            for point in result["curve"]:
                curve.add_scalar(f"eval/{metric}", point["mean"], point["inner_steps"])

    def close(self, status: str) -> None:
        self.writer.close()


class MLflowLog:
    """One MLflow run per run directory, named in its mlflow.json (tracking URI and run id)."""

    FILE = "mlflow.json"
    FLUSH_S = 10.0  # rows are sent in batches: at least this often, and before every checkpoint
    BATCH = 1000  # MLflow's limit of metrics per log_batch call

    def __init__(self, run_dir: Path, config: Config, run_id: str):
        import mlflow
        from mlflow.tracking import MlflowClient

        self.run_dir = Path(run_dir)
        saved_path = self.run_dir / self.FILE
        saved = json.loads(saved_path.read_text()) if saved_path.is_file() else None
        self.uri = saved["tracking_uri"] if saved else mlflow.get_tracking_uri()
        self.client = MlflowClient(self.uri)
        self.pending: list[dict] = []
        self.last_flush = time.monotonic()
        if saved:
            self.run_id = self._reopen(saved["run_id"])
        else:
            self.run_id = self._create(config, run_id)
            atomic_write_text(saved_path, json.dumps({"tracking_uri": self.uri, "run_id": self.run_id}))
        self.last_sent = self._last_step("meta_loss")

    def _create(self, config: Config, run_id: str) -> str:
        name = config.logging.mlflow_experiment
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        run = self.client.create_run(experiment_id, run_name=config.name, tags={
            "meta_dist.run_dir": str(self.run_dir.resolve()), "meta_dist.run_id": run_id})
        from mlflow.entities import Param

        params = [Param(k, str(v)) for k, v in flatten(config_mod.to_dict(config)).items()]
        for i in range(0, len(params), 100):  # MLflow's limit of params per log_batch call
            self.client.log_batch(run.info.run_id, params=params[i: i + 100])
        return run.info.run_id

    def _reopen(self, mlflow_run_id: str) -> str:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_run(mlflow_run_id)
        except MlflowException:
            raise UserError(f"MLflow run {mlflow_run_id} of {self.run_dir} is not in the tracking store "
                            f"{self.uri}; restore that store, or delete {self.run_dir / self.FILE} to "
                            f"log the rest of the run to a new MLflow run") from None
        self.client.update_run(mlflow_run_id, status="RUNNING")
        return mlflow_run_id

    def _last_step(self, key: str) -> int:
        return max((m.step for m in self.client.get_metric_history(self.run_id, key)), default=0)

    def backfill(self, rows: list[dict]) -> None:
        """Steps of earlier sessions the MLflow run does not hold yet (it may lag the checkpoint)."""
        self.rows(rows)

    def rows(self, rows: list[dict]) -> None:
        self.pending.extend(r for r in rows if r["step"] > self.last_sent)
        if time.monotonic() - self.last_flush >= self.FLUSH_S:
            self.flush()

    def flush(self) -> None:
        from mlflow.entities import Metric

        metrics = [Metric(key, value, int(row["wall_time"] * 1000), row["step"])
                   for row in self.pending for key, value in metric_values(row).items()]
        for i in range(0, len(metrics), self.BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[i: i + self.BATCH])
        if self.pending:
            self.last_sent = self.pending[-1]["step"]
        self.pending, self.last_flush = [], time.monotonic()

    def evaluated(self, result: dict, run_dir: Path) -> None:
        from mlflow.entities import Metric

        key, step = f"eval_{result['metric']}", result["step"]
        if self._last_step(key) < step:
            now = int(time.time() * 1000)
            self.client.log_batch(self.run_id, metrics=[Metric(key, result["mean"], now, step),
                                                        Metric(f"{key}_ci95", result["ci95"], now, step)])
        for name in ("eval.json", "curve.png", "config.yaml"):
            if (Path(run_dir) / name).is_file():
                self.client.log_artifact(self.run_id, str(Path(run_dir) / name))

    def close(self, status: str) -> None:
        self.flush()
        self.client.set_terminated(self.run_id, status)


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}: config keys as `--set` spells them."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class Trackers:
    """The loggers a run's config switches on, driven by the trainer: `backfill` the rows of earlier
    sessions, `rows` per step, `flush` before each checkpoint, `evaluated`, then `close`."""

    def __init__(self, loggers: list):
        self.loggers = loggers

    @classmethod
    def open(cls, config: Config, run_dir: Path, run_id: str, resume_step: int) -> "Trackers":
        loggers: list = []
        if config.logging.tensorboard:
            loggers.append(TensorBoardLog(run_dir, resume_step))
        if config.logging.mlflow:
            loggers.append(MLflowLog(run_dir, config, run_id))
        return cls(loggers)

    def backfill(self, rows: list[dict]) -> None:
        for logger in self.loggers:
            logger.backfill(rows)

    def row(self, row: dict) -> None:
        for logger in self.loggers:
            logger.rows([row])

    def flush(self) -> None:
        for logger in self.loggers:
            logger.flush()

    def evaluated(self, result: dict, run_dir: Path) -> None:
        for logger in self.loggers:
            logger.evaluated(result, run_dir)

    def close(self, status: str) -> None:
        """status: FINISHED, KILLED (stopped by a signal, resumable) or FAILED."""
        for logger in self.loggers:
            logger.close(status)
