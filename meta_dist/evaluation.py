"""The one evaluation routine: held-out tasks, adaptation curve, mean +- 95% CI, non-finite guard.

Every algorithm and entry point (the end of `train`, `meta-dist eval`, benchmarks) evaluates here.
Tasks come from the `test` (or `val`) split with the run seed, so two runs with the same seed are
scored on the same tasks. A task whose metric is NaN/Inf (a diverged fine-tune) is counted and
reported, never averaged in. The episodes are cut into fixed chunks of EVAL_CHUNK, each computed by
`eval_curves`, in this process or on workers (runtime/eval_pool.py): the chunks, their code and their
thread count are the same either way, so the result is bitwise the same too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import torch

from meta_dist import registry
from meta_dist.allocator import keep_freed_memory
from meta_dist.components import Components, build as build_components
from meta_dist.config import Config
from meta_dist.errors import UserError
from meta_dist.params import params_sha256
from meta_dist.progress import CountProgress
from meta_dist.stats import mean_ci95
from meta_dist.tasks.spec import TaskSpec, derive_seed

EVAL_CHUNK = 5  # episodes per unit of work; small, so that a chunk's activations stay small (allocator.py)


@dataclass(frozen=True)
class EvalSettings:
    """How each episode is adapted and scored (from the config's `eval` section)."""
    max_inner_steps: int
    inner_lr: float
    transductive_bn: bool


def eval_curves(algorithm, params: dict[str, torch.Tensor], specs: Sequence[TaskSpec],
                settings: EvalSettings) -> torch.Tensor:
    """One chunk's per-task metric after 0..max_inner_steps steps ([tasks, S]), in eval mode, the torch
    random state seeded from the chunk (and the caller's left as it was)."""
    if getattr(algorithm.family, "variable_shapes", False) and len(specs) > 1:  # episodes of differing shapes
        return torch.cat([eval_curves(algorithm, params, [spec], settings) for spec in specs])
    algorithm.model.eval()  # dropout off; batch norm keeps batch statistics (models/__init__.py)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed("eval", specs[0].seed))
        return algorithm.eval_chunk(params, specs, settings.max_inner_steps, settings.inner_lr,
                                    settings.transductive_bn)


class Pool(Protocol):
    """Computes chunks of episodes elsewhere (runtime/eval_pool.py); `in_process(j)` computes chunk j
    here, for a pool whose driver is one of its workers."""

    def curves(self, params: dict[str, torch.Tensor], chunks: list[list[TaskSpec]], settings: EvalSettings,
               in_process, progress) -> list[torch.Tensor]: ...


def evaluate(config: Config, params: dict[str, torch.Tensor], *, step: int, data_dir: str | None = None,
             num_tasks: int | None = None, ways: int | None = None, shots: int | None = None,
             split: str | None = None, components: Components | None = None, pool: Pool | None = None) -> dict:
    """`components` (default: the ones the config names) give the task family and the network; `pool`
    (default: none, this process only) spreads the episodes over workers."""
    # Small-op evaluation gains nothing from intra-op threads and loses much to oversubscription; the
    # caller's own setting is restored afterwards.
    threads = torch.get_num_threads()
    torch.set_num_threads(config.runtime.threads_per_worker)
    keep_freed_memory()
    try:
        return _evaluate(config, params, step, data_dir, num_tasks, ways, shots, split, components, pool)
    finally:
        torch.set_num_threads(threads)


def _evaluate(config: Config, params: dict[str, torch.Tensor], step: int, data_dir: str | None,
              num_tasks: int | None, ways: int | None, shots: int | None, split: str | None,
              components: Components | None, pool: Pool | None) -> dict:
    e = config.eval
    components = components or build_components(config, data_dir)
    family = components.family
    algorithm = components.algorithm(config)
    n = num_tasks or e.num_tasks
    split = split or e.split
    ways, shots = ways or e.ways or None, shots or e.shots or None
    if ways and family.metric == "accuracy" and ways != family.output_dim and algorithm.has_output_head:
        raise UserError(f"{config.algorithm.name} learns a {family.output_dim}-way output layer; evaluate it "
                        f"with --ways {family.output_dim} (metric methods such as protonet take any --ways)")
    shape: dict = {"ways": ways, "shots": shots}
    if family.metric == "mse":
        shape["num_query"] = e.num_query
    elif e.query_per_class:
        shape["num_query"] = e.query_per_class
    if family.metric == "accuracy" and getattr(family, "alphabet_episodes", False):  # episodic image tasks
        shape["within_alphabet"] = e.within_alphabet
    elif e.within_alphabet:
        raise UserError(f"eval.within_alphabet needs a task family that groups classes by alphabet (an image "
                        f"task store); {config.task.name} does not")
    settings = EvalSettings(e.max_inner_steps, e.inner_lr, e.transductive_bn)
    score = lambda split, count: _score(algorithm, family, params, config, split, count, shape, settings, pool)  # noqa: E731
    result = {**score(split, n), "step": step, "params_sha256": params_sha256(params), "split": split,
              "algorithm": config.algorithm.name, "task": config.task.name, "curve_axis": algorithm.curve_axis}
    if e.train_tasks:  # the meta-train figure, reported on its own
        result["train_split"] = {k: v for k, v in score("train", e.train_tasks).items() if k != "curve"}
    task_shape = _task_shape(config, family)
    if family.metric in ("accuracy", "success"):
        result["unit"] = "%"
    if family.metric == "accuracy" and getattr(family, "variable_shapes", False):  # Meta-Dataset episodes
        fixed = {"ways": ways, "shots": shots, "query_per_class": e.query_per_class}
        result.update(episodes=config.task.episodes, **{k: v for k, v in fixed.items() if v})
    elif family.metric == "accuracy":
        result.update(ways=ways or family.output_dim, shots=shots or task_shape["shots"],
                      query_per_class=e.query_per_class or task_shape["num_query"])
        if e.within_alphabet:
            result["within_alphabet"] = True
    if family.metric == "mse":
        result.update(shots=shots or task_shape["shots"])
    if hasattr(family, "versions"):  # results are comparable only within one version of the environments
        result.update(family.versions())
    if config.task.name == "bandits":  # RL^2's comparison: classic bandit algorithms on the same instances
        from meta_dist.algorithms.rl.baselines import bandit_baselines

        result["baselines"] = bandit_baselines(config, n, split)
    return result


def _score(algorithm, family, params: dict[str, torch.Tensor], config: Config, split: str, n: int, shape: dict,
           settings: EvalSettings, pool: Pool | None) -> dict:
    """Headline, curve and (for families that group their tasks, e.g. by environment) per-group means of
    the first `n` tasks of `split`."""
    specs = [family.spec(config.seed, split, 0, i, **shape) for i in range(n)]
    curves = _curves(algorithm, params, specs, settings, pool)
    curves = curves * (100.0 if family.metric in ("accuracy", "success") else 1.0)
    curve = []
    for s in range(curves.shape[1]):
        mean, ci, finite, bad = mean_ci95(curves[:, s])
        curve.append({"inner_steps": s, "mean": mean, "ci95": ci, "tasks": finite, "nonfinite_tasks": bad})
    head = min(config.eval.inner_steps, len(curve) - 1)
    result = {"metric": family.metric, **{k: curve[head][k] for k in ("mean", "ci95", "tasks", "inner_steps",
                                                                        "nonfinite_tasks")}, "curve": curve}
    if hasattr(family, "task_group"):
        groups: dict[str, list[int]] = {}
        for i, spec in enumerate(specs):
            groups.setdefault(family.task_group(spec), []).append(i)
        result["per_task"] = {g: mean_ci95(curves[rows, head])[0] for g, rows in sorted(groups.items())}
    return result


def _curves(algorithm, params: dict[str, torch.Tensor], specs: list[TaskSpec], settings: EvalSettings,
            pool: Pool | None) -> torch.Tensor:
    """Every episode's curve ([tasks, S]), chunk by chunk, in this process or on `pool`, in task order."""
    chunks = [specs[i: i + EVAL_CHUNK] for i in range(0, len(specs), EVAL_CHUNK)]
    progress = CountProgress("evaluation", "episodes")
    in_process = lambda j: eval_curves(algorithm, params, chunks[j], settings)  # noqa: E731
    if pool is not None:
        return torch.cat(pool.curves(params, chunks, settings, in_process, progress))
    done, out = 0, []
    for j, chunk in enumerate(chunks):
        out.append(in_process(j))
        done += len(chunk)
        progress(done, len(specs))
    return torch.cat(out)


def _task_shape(config: Config, family) -> dict:
    """Shots and queries of the evaluated episodes when not overridden: the config's for built-in families,
    the family's own `shots` / `num_query` attributes (None if it has none) for a user's."""
    if registry.is_builtin("task", config.task.name):
        return {"shots": config.task.shots, "num_query": config.task.num_query}
    return {"shots": getattr(family, "shots", None), "num_query": getattr(family, "num_query", None)}


def format_result(result: dict, reference: str = "") -> str:
    """Human summary: the adaptation curve, then the headline with its CI."""
    unit = result.get("unit", "")
    lines = [f"evaluation on {result['tasks']} {result['split']} tasks ({result['metric']}):"]
    episodes = result.get("curve_axis") == "episodes"
    for point in result["curve"]:
        if point["inner_steps"] in (0, 1, result["inner_steps"], result["curve"][-1]["inner_steps"]):
            where = f"episode {point['inner_steps'] + 1:>2}" if episodes else f"after {point['inner_steps']:>2} steps"
            lines.append(f"  {where}: {point['mean']:.4g}{unit} +- {point['ci95']:.2g}"
                         + (f"  ({point['nonfinite_tasks']} diverged tasks excluded)" if point["nonfinite_tasks"] else ""))
    for name, value in result.get("per_task", {}).items():
        lines.append(f"  {name}: {value:.4g}{unit}")
    if "train_split" in result:
        train = result["train_split"]
        lines.append(f"  on {train['tasks']} training tasks: {train['mean']:.4g}{unit} +- {train['ci95']:.2g}")
    for name, b in result.get("baselines", {}).items():
        lines.append(f"  {name} on the same tasks: {b['mean']:.4g} +- {b['ci95']:.2g}")
    if reference:
        lines.append(f"  reference: {reference}")
    return "\n".join(lines)
