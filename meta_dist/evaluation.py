"""The one evaluation routine: held-out tasks, adaptation curve, mean +- 95% CI, non-finite guard.

Every algorithm and entry point (the end of `train`, `meta-dist eval`, benchmarks) evaluates here.
Tasks come from the `test` (or `val`) split with the run seed, so two runs with the same seed are
scored on the same tasks. A task whose metric is NaN/Inf (a diverged fine-tune) is counted and
reported, never averaged in.
"""
from __future__ import annotations

import torch

from meta_dist import registry
from meta_dist.components import Components, build as build_components
from meta_dist.config import Config
from meta_dist.errors import UserError
from meta_dist.params import params_sha256
from meta_dist.stats import mean_ci95

EVAL_CHUNK = 50


def evaluate(config: Config, params: dict[str, torch.Tensor], *, step: int, data_dir: str | None = None,
             num_tasks: int | None = None, ways: int | None = None, shots: int | None = None,
             split: str | None = None, components: Components | None = None) -> dict:
    """`components` (default: the ones the config names) give the task family and the network."""
    # Small-op evaluation gains nothing from intra-op threads and loses much to oversubscription; the
    # caller's own setting is restored afterwards.
    threads = torch.get_num_threads()
    torch.set_num_threads(config.runtime.threads_per_worker)
    try:
        return _evaluate(config, params, step, data_dir, num_tasks, ways, shots, split, components)
    finally:
        torch.set_num_threads(threads)


def _evaluate(config: Config, params: dict[str, torch.Tensor], step: int, data_dir: str | None,
              num_tasks: int | None, ways: int | None, shots: int | None, split: str | None,
              components: Components | None) -> dict:
    e = config.eval
    components = components or build_components(config, data_dir)
    family = components.family
    algorithm = components.algorithm(config)
    algorithm.model.eval()  # dropout off; batch norm keeps batch statistics (models/__init__.py)
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
    specs = [family.spec(config.seed, split, 0, i, **shape) for i in range(n)]
    curves = torch.cat([algorithm.eval_chunk(params, specs[i: i + EVAL_CHUNK], e.max_inner_steps, e.inner_lr,
                                             e.transductive_bn) for i in range(0, n, EVAL_CHUNK)])
    scale = 100.0 if family.metric == "accuracy" else 1.0
    curve = []
    for s in range(curves.shape[1]):
        mean, ci, finite, bad = mean_ci95(curves[:, s] * scale)
        curve.append({"inner_steps": s, "mean": mean, "ci95": ci, "tasks": finite, "nonfinite_tasks": bad})
    head = curve[min(e.inner_steps, len(curve) - 1)]
    result = {"metric": family.metric, "mean": head["mean"], "ci95": head["ci95"], "tasks": head["tasks"],
              "step": step, "params_sha256": params_sha256(params), "inner_steps": head["inner_steps"],
              "nonfinite_tasks": head["nonfinite_tasks"], "split": split, "curve": curve,
              "algorithm": config.algorithm.name, "task": config.task.name}
    task_shape = _task_shape(config, family)
    if family.metric == "accuracy":
        result.update(unit="%", ways=ways or family.output_dim, shots=shots or task_shape["shots"],
                      query_per_class=e.query_per_class or task_shape["num_query"])
    if family.metric == "mse":
        result.update(shots=shots or task_shape["shots"])
    if config.task.name == "bandits":  # RL^2's comparison: classic bandit algorithms on the same instances
        from meta_dist.algorithms.rl.baselines import bandit_baselines

        result["baselines"] = bandit_baselines(config, n, split)
    return result


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
    for point in result["curve"]:
        if point["inner_steps"] in (0, 1, result["inner_steps"], result["curve"][-1]["inner_steps"]):
            lines.append(f"  after {point['inner_steps']:>2} steps: {point['mean']:.4g}{unit} +- {point['ci95']:.2g}"
                         + (f"  ({point['nonfinite_tasks']} diverged tasks excluded)" if point["nonfinite_tasks"] else ""))
    for name, b in result.get("baselines", {}).items():
        lines.append(f"  {name} on the same tasks: {b['mean']:.4g} +- {b['ci95']:.2g}")
    if reference:
        lines.append(f"  reference: {reference}")
    return "\n".join(lines)
