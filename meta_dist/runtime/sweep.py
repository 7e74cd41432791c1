"""Hyperparameter sweeps on Ray Tune: `meta-dist tune` and `meta_dist.tune`.

Each trial is a full meta-dist run, with its own run directory (<run dir>/trials/<trial id>: config,
checkpoints, metrics, final evaluation), whose workers are reserved together: one placement group per
trial, its first bundle for the trial's own process (worker 0 where the driver computes, and the
evaluations), the rest for its worker actors. Trials that do not fit the cluster at once wait their turn.
Every `report_every` steps a trial scores its parameters on `val_tasks` validation tasks and reports the
mean to Tune, whose ASHA scheduler may stop it early. The sweep ends with results.csv and results.md in
the run directory, naming the best trial by the validation metric; `resume` continues an interrupted
sweep, its unfinished trials from their own checkpoints. Trials sample their values with the run seed,
so the same command samples the same trials.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from meta_dist import config as config_mod
from meta_dist.config import Config
from meta_dist.errors import UserError

DISTRIBUTIONS = ("loguniform", "uniform", "randint", "choice", "grid")
SCHEDULERS = ("asha", "fifo")
EXPERIMENT = "tune"  # Ray Tune's own state, under the sweep's run directory
EXAMPLE = "algorithm.inner_lr=loguniform(1e-3,1e-1)"


def parse_search(items, base: Config) -> dict:
    """{"KEY": Tune domain} from `KEY=DIST` strings (or a {KEY: DIST string or Tune domain} mapping);
    every KEY is checked against the config with one of its values."""
    pairs = items.items() if isinstance(items, dict) else [_split_item(item) for item in items]
    space = {}
    for key, dist in pairs:
        space[key], sample = parse_distribution(key, dist) if isinstance(dist, str) else (dist, None)
        if sample is not None:
            _check_key(base, key, sample)
    if not space:
        raise UserError(f"a sweep needs at least one --search KEY=DIST, e.g. --search {EXAMPLE}")
    return space


def _split_item(item: str) -> tuple[str, str]:
    key, sep, dist = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--search expects KEY=DIST (e.g. {EXAMPLE}), got '{item}'")
    return key.strip(), dist


def parse_distribution(key: str, text: str):
    """(Tune domain, one of its values) of "loguniform(a,b)", "uniform(a,b)", "randint(a,b)" (a <= x < b),
    "choice(v1,v2,...)" or "grid(v1,v2,...)" (every value, each `trials` times)."""
    from ray import tune

    match = re.fullmatch(r"\s*(\w+)\s*\((.*)\)\s*", text)
    if not match or match.group(1) not in DISTRIBUTIONS:
        raise UserError(f"--search {key}={text}: choose a distribution {', '.join(d + '(...)' for d in DISTRIBUTIONS)}, "
                        f"e.g. {EXAMPLE}")
    name, values = match.group(1), _arguments(key, match.group(2))
    if name in ("choice", "grid"):
        if not values:
            raise UserError(f"--search {key}={text}: {name} needs at least one value")
        return (tune.choice(values) if name == "choice" else tune.grid_search(values)), values[0]
    low, high = _bounds(key, text, name, values)
    domain = {"loguniform": tune.loguniform, "uniform": tune.uniform, "randint": tune.randint}[name](low, high)
    return domain, low


def _arguments(key: str, text: str) -> list:
    """Literal values of an argument list; a bare word is a string (choice(sgd,adam))."""
    try:
        call = ast.parse(f"f({text})", mode="eval").body
        return [node.id if isinstance(node, ast.Name) else ast.literal_eval(node) for node in call.args]
    except (SyntaxError, ValueError):
        raise UserError(f"--search {key}: cannot read the values '{text}'; give numbers, words or lists, "
                        f"separated by commas") from None


def _bounds(key: str, text: str, name: str, values: list) -> tuple:
    numbers = len(values) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if not numbers or values[0] >= values[1] or (name == "loguniform" and values[0] <= 0):
        need = "0 < low < high" if name == "loguniform" else "low < high"
        raise UserError(f"--search {key}={text}: {name} takes two numbers, {need}")
    if name == "randint" and not all(isinstance(v, int) for v in values):
        raise UserError(f"--search {key}={text}: randint takes two integers")
    return values[0], values[1]


def _check_key(base: Config, key: str, value) -> None:
    from meta_dist.api import resolve_config

    try:
        config_mod.validate(resolve_config(base, {key: value}))
    except UserError as e:
        raise UserError(f"--search {key}: {e}") from None


def trial_bundles(config: Config, workers: int) -> list[dict]:
    """The placement group of one trial: its own process first (computing as worker 0 where it may),
    then one bundle per worker actor."""
    from meta_dist.runtime import placement

    threads = config.runtime.threads_per_worker
    driver = placement.driver_computes(config, placement.RaySession(driver_cpus=threads))
    actors = [placement.worker_resources(config, i) for i in range(workers - int(driver))]
    return [{"CPU": float(threads if driver else 1)}] + [
        {"CPU": float(r["num_cpus"]), **({"GPU": float(r["num_gpus"])} if r["num_gpus"] else {})} for r in actors]


def check_fits(bundles: list[dict], cluster: dict) -> None:
    """A trial larger than the whole cluster would wait forever: a user error instead."""
    for resource in ("CPU", "GPU"):
        need = sum(b.get(resource, 0.0) for b in bundles)
        if need > cluster.get(resource, 0.0) + 1e-9:
            raise UserError(f"one trial needs {need:g} {resource}s ({len(bundles)} bundles: its process and its worker "
                            f"actors) but the Ray cluster has {cluster.get(resource, 0.0):g}; lower --workers")


@dataclass(frozen=True)
class Sweep:
    run_dir: Path
    rows: list[dict]
    """One row per trial: id, status (completed | stopped early | unfinished | error), searched values,
    last reported step, validation and test metrics, run directory."""
    best: dict | None
    """The row of the best trial by the validation metric."""
    metric: str
    mode: str
    unfinished: int = 0
    """Trials neither terminated nor failed (the sweep was interrupted or ran out of time): `resume` runs them."""


def tune(config: str | Config | dict | None = None, *, search, trials: int = 4, scheduler: str = "asha",
         workers: int = 1, time_budget_s: float | None = None, run_dir: str | Path | None = None,
         overrides=None, steps: int | None = None, seed: int | None = None, report_every: int | None = None,
         val_tasks: int = 100, data: str | None = None, address: str | None = None, resume: bool = False) -> Sweep:
    """Sweep `search` ({KEY: "loguniform(a,b)" | "uniform(a,b)" | "randint(a,b)" | "choice(...)" |
    "grid(...)" or a Tune domain}) over `trials` meta-dist runs of `config` with `workers` workers each;
    see the module docstring. `report_every` (default: a tenth of the steps) sets how often trials are
    scored, on `val_tasks` validation tasks. `resume`: continue the sweep in `run_dir` (the same arguments).
    Returns the results table and its best trial."""
    from meta_dist.api import resolve_config
    from meta_dist.components import build as build_components
    from meta_dist.runtime.sweep_trials import run_sweep

    if scheduler not in SCHEDULERS:
        raise UserError(f"scheduler '{scheduler}' is not one of: {', '.join(SCHEDULERS)}")
    for name, value in (("trials", trials), ("workers", workers), ("val_tasks", val_tasks),
                        ("report_every", 1 if report_every is None else report_every)):
        if value <= 0:
            raise UserError(f"{name} must be positive, got {value}")
    options = config_mod.run_overrides(workers=workers, address=address, data=data, steps=steps, seed=seed,
                                       backend="ray")
    base = config_mod.validate(config_mod.apply_overrides(resolve_config(config, overrides), options))
    space = parse_search(search, base)
    every = report_every or max(1, base.steps // 10)
    components = build_components(base, data)  # checks the task family (and user code) before any trial
    root = Path(run_dir) if run_dir is not None else Path("runs") / f"tune_{base.name}"
    held = (root / EXPERIMENT).exists()
    if resume and not held:
        raise UserError(f"nothing to resume in {root}: it holds no sweep; drop --resume to start one there")
    if held and not resume:
        raise UserError(f"{root} already holds a sweep; pass --resume to continue it, or choose a new --run-dir")
    return run_sweep(base, space, root.resolve(), components.family.metric, components.code_dir,
                     trials=trials, scheduler=scheduler,
                     time_budget_s=time_budget_s, report_every=every, val_tasks=val_tasks, resume=resume)
