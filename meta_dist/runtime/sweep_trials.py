"""The Ray Tune side of a sweep (see sweep.py): the trial function, the Tuner, and the results table."""
from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

from meta_dist import checkpoint, config as config_mod
from meta_dist.config import Config
from meta_dist.errors import UserError
from meta_dist.fileio import atomic_write_text
from meta_dist.runtime.sweep import EXPERIMENT, Sweep, check_fits, trial_bundles


def mode_of(metric: str) -> str:
    """Lower is better for a regression error, higher for accuracy and return."""
    return "min" if metric == "mse" else "max"


class Reporter:
    """`on_step` of a trial's Trainer: every `every` steps, the validation score to Tune."""

    def __init__(self, config: Config, every: int, val_tasks: int, key: str):
        self.config, self.every, self.val_tasks, self.key = config, every, val_tasks, key
        self.trainer = None

    def validate(self, params: dict, step: int) -> float:
        from meta_dist.evaluation import evaluate

        result = evaluate(self.config, params, step=step, num_tasks=self.val_tasks, split="val",
                          components=self.trainer.components)
        return result["mean"]

    def __call__(self, step: int, row: dict) -> None:
        from ray import tune

        if step % self.every == 0 and step != self.config.steps:
            score = self.validate(self.trainer.backend.state()["params"], step)
            tune.report({"step": step, self.key: score, "meta_loss": row["meta_loss"]})

    def final(self, result: dict, run_dir: Path) -> None:
        from ray import tune

        score = self.validate(checkpoint.load_latest(run_dir).params, result["step"])
        tune.report({"step": result["step"], self.key: score, f"test_{result['metric']}": result["mean"],
                     "test_ci95": result["ci95"], "completed": True})


def run_trial(params: dict, *, base: dict, root: str, every: int, val_tasks: int, key: str) -> None:
    """One trial: the base config with the trial's values, trained in its own run directory (resumed from
    its checkpoint when the sweep is restored), scored on validation tasks along the way."""
    from ray import tune

    from meta_dist.api import resolve_config
    from meta_dist.runtime.driver import Trainer

    config = config_mod.validate(resolve_config(config_mod.from_dict(base), params))
    run_dir = Path(root) / "trials" / tune.get_context().get_trial_id()
    reporter = Reporter(config, every, val_tasks, key)
    resume = bool(checkpoint.list_checkpoints(run_dir))
    trainer = reporter.trainer = Trainer(config, run_dir, resume=resume, on_step=reporter)
    reporter.final(trainer.run(), run_dir)


def _tuner(base: Config, space: dict, root: Path, metric: str, *, trials: int, scheduler: str,
           time_budget_s: float | None, report_every: int, val_tasks: int, resume: bool):
    from functools import partial

    from ray import tune

    key = f"val_{metric}"
    trainable = tune.with_resources(
        partial(run_trial, base=config_mod.to_dict(base), root=str(root), every=report_every, val_tasks=val_tasks,
                key=key),
        tune.PlacementGroupFactory(trial_bundles(base, base.runtime.num_workers)))
    path = root / EXPERIMENT
    if resume:
        if not tune.Tuner.can_restore(str(path)):
            raise UserError(f"{path} holds no sweep state Ray Tune can restore; start the sweep in a new --run-dir")
        return tune.Tuner.restore(str(path), trainable, resume_unfinished=True, resume_errored=False,
                                  restart_errored=False)
    asha = tune.schedulers.ASHAScheduler(time_attr="step", max_t=base.steps, grace_period=report_every,
                                         reduction_factor=2)
    return tune.Tuner(
        trainable, param_space=space,
        tune_config=tune.TuneConfig(metric=key, mode=mode_of(metric), num_samples=trials,
                                    scheduler=asha if scheduler == "asha" else None, time_budget_s=time_budget_s,
                                    search_alg=tune.search.BasicVariantGenerator(random_state=base.seed)),
        run_config=tune.RunConfig(storage_path=str(root), name=EXPERIMENT, verbose=1,
                                  failure_config=tune.FailureConfig(max_failures=0)))


def run_sweep(base: Config, space: dict, root: Path, metric: str, code_dir: str | None, **options) -> Sweep:
    """Start (or join) Ray, run the trials, write the results table."""
    from meta_dist.runtime import placement

    # Trials compute in their own processes: the sweep's driver holds no CPUs back. Trials keep the
    # working directory (the shipped code), not Tune's per-trial folder, so import paths resolve.
    # Trials reach their actors by ordinary calls: a trial the scheduler stops is killed mid-step, and
    # the actors of a compiled graph whose driver is killed crash (loudly) instead of exiting.
    base = replace(base, runtime=replace(base.runtime, compiled_graph=False))
    env = {**placement.code_runtime_env(code_dir, base.task.data_dir), "env_vars": {"RAY_CHDIR_TO_TRIAL_DIR": "0"}}
    session = placement.init_ray(replace(base, runtime=replace(base.runtime, driver_worker=False)), env)
    try:
        check_fits(trial_bundles(base, base.runtime.num_workers), placement.cluster_resources())
        root.mkdir(parents=True, exist_ok=True)
        grid = _tuner(base, space, root, metric, **options).fit()
        sweep = results_table(grid, space, root, metric)
    finally:
        if session.owned:
            placement.shutdown_ray()
    return sweep


def results_table(grid, space: dict, root: Path, metric: str) -> Sweep:
    """results.csv and results.md in the sweep's run directory; the best trial by the validation metric."""
    from ray import tune

    key, mode = f"val_{metric}", mode_of(metric)
    reported = {r.metrics["trial_id"]: r.metrics for r in grid if r.metrics and "trial_id" in r.metrics}
    # Tune's saved experiment state: every trial's status and values, those not started included.
    trials = sorted(tune.ExperimentAnalysis(str(root / EXPERIMENT)).trials, key=lambda t: t.trial_id)
    rows = [_row(t, reported.get(t.trial_id, {}), space, root, key, metric) for t in trials]
    scored = [r for r in rows if r[key] is not None]
    best = (min if mode == "min" else max)(scored, key=lambda r: r[key]) if scored else None
    _write_csv(root / "results.csv", rows)
    atomic_write_text(root / "results.md", format_markdown(rows, best, key, mode))
    return Sweep(root, rows, best, key, mode, unfinished=sum(r["status"] == "unfinished" for r in rows))


def _row(trial, metrics: dict, space: dict, root: Path, key: str, metric: str) -> dict:
    """completed | stopped early (by the scheduler) | unfinished (interrupted, out of time: `resume` runs
    it) | error."""
    status = ("error" if trial.status == "ERROR" else "completed" if metrics.get("completed")
              else "stopped early" if trial.status == "TERMINATED" else "unfinished")
    values = {k: trial.config.get(k) for k in space}
    return {"trial": trial.trial_id, "status": status, **values, "step": metrics.get("step"),
            key: metrics.get(key), f"test_{metric}": metrics.get(f"test_{metric}"),
            "run_dir": str(Path(root) / "trials" / trial.trial_id)}


def _write_csv(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    columns = {k: [_cell(r[k]) for r in rows] for k in rows[0]} if rows else {"trial": []}
    sink = io.BytesIO()
    pacsv.write_csv(pa.table(columns), sink)
    atomic_write_text(path, sink.getvalue().decode())


def _cell(value):
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def format_markdown(rows: list[dict], best: dict | None, key: str, mode: str) -> str:
    if not rows:
        return "No trial ran.\n"
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_fmt(r[k]) for k in head) + " |" for r in rows]
    if best is not None:
        searched = {k: v for k, v in best.items() if k not in ("trial", "status", "step", key, "run_dir")
                    and not k.startswith("test_")}
        lines += ["", f"Best trial by {key} ({mode}): {best['trial']} ({key} {_fmt(best[key])}), "
                      f"config: {', '.join(f'{k}={_fmt(v)}' for k, v in searched.items())}; run directory "
                      f"{best['run_dir']}"]
    return "\n".join(lines) + "\n"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)
