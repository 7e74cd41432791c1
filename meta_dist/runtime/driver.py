"""The driver: one meta-training run, from a fresh or resumed run directory to its evaluation.

A synchronous meta-step: derive the step's task specs from (seed, step), cut them into fixed
chunks, run the chunks on the backend against one broadcast of the parameters, sum the chunk
updates in chunk order (so the result does not depend on which worker computed what), drop
non-finite chunks, and commit the mean through the parameter server. Metrics and checkpoints are
written together, so a run killed at any point resumes with the same step sequence and, on CPU in
synchronous mode, bitwise-identical parameters.
"""
from __future__ import annotations

import json
import logging
import signal
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

from meta_dist import checkpoint, config as config_mod, provenance
from meta_dist.components import Components, build as build_components
from meta_dist.config import Config
from meta_dist.errors import NonFiniteError, UserError
from meta_dist.evaluation import evaluate, format_result
from meta_dist.fileio import atomic_write_text
from meta_dist.metrics import MetricsLog, plot_curve
from meta_dist.progress import StepProgress
from meta_dist.references import reference_for
from meta_dist.runtime.faults import FaultPlan
from meta_dist.runtime.ledger import StaleSyncLedger
from meta_dist.runtime.node_fold import Partial, finish, fold
from meta_dist.runtime.wire import Chunk, ChunkResult
from meta_dist.tasks.spec import derive_seed
from meta_dist.tracking import Trackers, check_available

log = logging.getLogger("meta_dist")


def make_chunks(config: Config, step: int, specs: list) -> list[Chunk]:
    size = config.runtime.chunk_size
    return [Chunk(step, i, tuple(specs[s: s + size])) for i, s in enumerate(range(0, len(specs), size))]


@dataclass
class StepOutcome:
    """One committed meta-step, with where its time went (seconds)."""
    step: int
    results: list[ChunkResult]
    num_tasks: int
    sums: dict[str, float]
    bad_chunks: int
    applied: bool
    specs_s: float
    run_s: float
    aggregate_s: float
    step_s: float

    @property
    def busy_s(self) -> dict[int, float]:
        """Compute seconds of each worker that ran chunks of this step."""
        per_worker: dict[int, float] = {}
        for r in self.results:
            per_worker[r.worker_id] = per_worker.get(r.worker_id, 0.0) + r.compute_s
        return per_worker

    @property
    def compute_s(self) -> float:
        """The busiest worker's compute time: the floor under this step's duration."""
        return max(self.busy_s.values(), default=0.0)


def commit(backend, partial: Partial, step: int, t0: float, t_specs: float) -> StepOutcome:
    """Apply the mean of the step's chunk-order sum (`partial`, node_fold.py) through the server."""
    t1 = time.perf_counter()
    total, num_tasks, sums, bad_chunks = finish(partial)
    if total is not None:
        backend.apply(total / num_tasks, step)
    t2 = time.perf_counter()
    return StepOutcome(step, list(partial.results), num_tasks, sums, bad_chunks, total is not None,
                       t_specs - t0, t1 - t_specs, t2 - t1, t2 - t0)


def sync_step(backend, family, config: Config, step: int) -> StepOutcome:
    """One synchronous meta-step: specs of (seed, step) -> fixed chunks -> workers -> commit."""
    t0 = time.perf_counter()
    specs = family.specs(config.seed, "train", step, config.algorithm.meta_batch_size)
    t_specs = time.perf_counter()
    partial = backend.run_step(backend.params_handle(), make_chunks(config, step, specs))
    return commit(backend, partial, step, t0, t_specs)


class Trainer:
    def __init__(self, config: Config, run_dir: Path, *, data_dir: str | None = None, resume: bool = False,
                 on_step=None, components: Components | None = None):
        """`on_step(step, row)` is called after each committed step (monitoring, tests); `components`
        replace the ones the config names (objects given to `meta_dist.train`)."""
        self.run_dir = Path(run_dir)
        self.on_step = on_step
        self.fault_plan = FaultPlan.from_env()
        self.data_dir = data_dir or config.task.data_dir or None
        self.resume = resume
        self.stop_signal: int | None = None
        # Built (and user components checked) before the run directory is touched: bad input writes nothing.
        self.components = components or build_components(config, self.data_dir)
        check_available(config)
        self.config = self._prepare_run_dir(config)

    # -- run directory ---------------------------------------------------------------------------
    def _prepare_run_dir(self, config: Config) -> Config:
        cfg_path = self.run_dir / "config.yaml"
        if self.resume:
            if not checkpoint.list_checkpoints(self.run_dir):
                raise UserError(f"nothing to resume in {self.run_dir}: it holds no checkpoint; "
                                f"drop --resume to start a new run there")
            self.run_id = json.loads((self.run_dir / "run.json").read_text())["run_id"] \
                if (self.run_dir / "run.json").exists() else ""
            return config
        if checkpoint.list_checkpoints(self.run_dir) or (self.run_dir / "metrics.parquet").exists():
            raise UserError(f"{self.run_dir} already holds a run; pass --resume to continue it, "
                            f"or choose a new --run-dir")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run_id = uuid.uuid4().hex[:12]
        atomic_write_text(cfg_path, config_mod.dump(config))
        record = {"run_id": self.run_id, "objects": list(self.components.given), **provenance.record()}
        family = self.components.family
        if hasattr(family, "versions"):  # e.g. Meta-World's package and reward-function versions
            record["environment"] = family.versions()
        atomic_write_text(self.run_dir / "run.json", json.dumps(record))
        return config

    # -- main loop -------------------------------------------------------------------------------
    def run(self) -> dict:
        cfg = self.config
        components = self.components
        init = components.algorithm(cfg).init_params(derive_seed("init", cfg.seed))
        ckpt = checkpoint.load_latest(self.run_dir) if self.resume else None
        if ckpt is not None:
            checkpoint.check_compatible(ckpt, init)
            if self.run_id and ckpt.run_id != self.run_id:
                raise UserError(f"checkpoint {ckpt.path} belongs to run {ckpt.run_id}, not {self.run_id}; "
                                f"use the run directory it came from")
        metrics = MetricsLog(self.run_dir)
        start_step = ckpt.step if ckpt is not None else 0
        metrics.load(start_step)
        self.trackers = Trackers.open(cfg, self.run_dir, self.run_id, start_step)
        try:
            result = self._train_and_evaluate(init, ckpt, start_step, metrics)
        except KeyboardInterrupt:
            self.trackers.close("KILLED")
            raise
        except BaseException:
            self.trackers.close("FAILED")
            raise
        self.trackers.close("FINISHED")
        return result

    def _train_and_evaluate(self, init: dict, ckpt, start_step: int, metrics: MetricsLog) -> dict:
        cfg, components = self.config, self.components
        self.trackers.backfill(metrics.rows)
        backend = self.backend = self._make_backend(init, components)
        try:
            if ckpt is not None:
                backend.load_state({"params": ckpt.params, "optimizer": ckpt.optimizer, "version": ckpt.version})
                print(f"resuming from {ckpt.path.name} (step {ckpt.step})", file=sys.stderr)
            final_step = self._loop(backend, components.family, metrics, start_step)
            state = backend.state()
            self._checkpoint(final_step, state, metrics)
            plot_curve(self.run_dir)
            if self.stop_signal is not None:
                print(f"stopped by signal {self.stop_signal} at step {final_step}; continue with "
                      f"`meta-dist train --resume --run-dir {self.run_dir}`", file=sys.stderr)
                raise KeyboardInterrupt
            result = evaluate(cfg, state["params"], step=final_step, components=components, pool=_eval_pool(backend))
        finally:
            backend.shutdown()
        atomic_write_text(self.run_dir / "eval.json", json.dumps(result, indent=1))
        self.trackers.evaluated(result, self.run_dir)
        print(format_result(result, reference_for(cfg)), file=sys.stderr)
        return result

    def _make_backend(self, init, components: Components):
        from meta_dist.runtime.backend import RayBackend
        from meta_dist.runtime.local_backend import LocalBackend

        if self.config.runtime.backend == "local":
            return LocalBackend(self.config, init, components)
        return RayBackend(self.config, init, components)

    def _loop(self, backend, family, metrics: MetricsLog, start_step: int) -> int:
        """Commit steps (sync or async), record each, checkpoint on schedule, stop on time or signal."""
        cfg = self.config
        t_start = time.monotonic()
        step = start_step
        progress = StepProgress(cfg.steps, start_step)
        commits = self._sync_steps if cfg.runtime.mode == "sync" else self._async_steps
        with _signals_to_flag(self):
            for step, row in commits(backend, family, start_step):
                metrics.append(row)
                self.trackers.row(row)
                progress.update(step, row)
                if self.on_step is not None:
                    self.on_step(step, row)
                if self.fault_plan is not None:
                    self.fault_plan.after_step(step)
                out_of_time = cfg.time_budget_s and time.monotonic() - t_start >= cfg.time_budget_s
                if step % cfg.checkpoint.every == 0 and step != cfg.steps and not out_of_time:
                    self._checkpoint(step, backend.state(), metrics)
                if self.stop_signal is not None or out_of_time:
                    break
        progress.close()
        return step

    def _record(self, o: StepOutcome) -> dict:
        """Bad-step accounting and the metrics row of one committed step."""
        if o.bad_chunks:
            log.warning("step %d: %d chunk(s) with non-finite updates skipped", o.step, o.bad_chunks)
        if not o.applied:
            self.bad_steps += 1
            if self.bad_steps >= self.config.runtime.max_bad_steps:
                raise NonFiniteError(f"{self.bad_steps} consecutive meta-steps produced only non-finite "
                                     f"updates (last: step {o.step}); lower the learning rates")
        else:
            self.bad_steps = 0
        row = {"step": o.step, "num_tasks": o.num_tasks, "step_time_s": o.step_s,
               "meta_loss": o.sums.get("meta_loss", float("nan")) / max(o.num_tasks, 1),
               "wall_time": time.time(), "bad_chunks": o.bad_chunks, "compute_s": o.compute_s,
               "dispatch_s": o.run_s, "aggregate_s": o.aggregate_s}
        for key, total in o.sums.items():  # accuracy, return, ...: per-task means
            if key != "meta_loss":
                row[key] = total / max(o.num_tasks, 1)
        return row

    def _sync_steps(self, backend, family, start_step: int):
        """Synchronous: every chunk of step s runs on the parameters of version s-1."""
        self.bad_steps = 0
        for step in range(start_step + 1, self.config.steps + 1):
            yield step, self._record(sync_step(backend, family, self.config, step))

    def _async_steps(self, backend, family, start_step: int):
        """Stale Synchronous Parallel: workers never wait for each other; each idle worker gets the next
        chunk with the newest parameters, and `StaleSyncLedger` decides what commits (ledger.py).
        Throughput over bitwise reproducibility (docs/architecture.md)."""
        cfg = self.config
        self.bad_steps = 0

        def chunks_of(spec_step: int) -> list[Chunk]:
            return make_chunks(cfg, spec_step, family.specs(cfg.seed, "train", spec_step, cfg.algorithm.meta_batch_size))

        ssp = StaleSyncLedger(cfg.runtime.staleness, cfg.algorithm.meta_batch_size, chunks_of, start_step)
        step, t0 = start_step, time.perf_counter()
        while step < cfg.steps:
            for index in backend.live_workers():
                backend.dispatch(index, backend.params_handle(), [ssp.next_chunk()])
            done = backend.next_done(timeout_s=1.0)
            if done is None:
                continue
            _, chunks, results = done
            ssp.returned(chunks, results, backend.version)
            if ssp.ready:
                step += 1
                accepted, stale, staleness_mean = ssp.take(backend.version)  # before the commit bumps it
                row = self._record(commit(backend, fold(None, accepted), step, t0, t0))
                row["stale_rejected"], row["staleness_mean"] = stale, staleness_mean
                t0 = time.perf_counter()
                yield step, row

    def _checkpoint(self, step: int, state: dict, metrics: MetricsLog) -> None:
        if step == 0:
            return
        metrics.rows = [r for r in metrics.rows if r["step"] <= step]
        self.trackers.flush()  # before the checkpoint: a resume then finds every step up to it logged
        checkpoint.save(self.run_dir, step, state, self.run_id, config_mod.to_dict(self.config),
                        self.config.checkpoint.keep)
        metrics.flush()


def _eval_pool(backend):
    """The final evaluation runs on a Ray run's own workers, before they stop."""
    from meta_dist.runtime.backend import RayBackend
    from meta_dist.runtime.eval_pool import EvalPool

    return EvalPool(backend) if isinstance(backend, RayBackend) else None


class _signals_to_flag:
    """SIGTERM/SIGINT ask the loop to stop after the current step (then checkpoint)."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        self.previous: dict = {}

    def __enter__(self):
        if threading_is_main():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.trainer.stop_signal = signum

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def threading_is_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def load_run_config(run_dir: Path) -> Config:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise UserError(f"{run_dir} is not a meta-dist run directory (no config.yaml); pass the --run-dir of a run")
    return config_mod.validate(config_mod.from_dict(yaml.safe_load(path.read_text()) or {}))
