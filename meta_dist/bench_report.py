"""`meta-dist bench`'s report: each row's ratios to the single-process references and the table.

Supervised MAML workloads are compared with the per-task loop and the vmapped process
(bench_loops.py). Meta-RL workloads have no such reference (their cost is the environments, which
no single-process trick batches away); their rows carry environment steps per second instead,
the tasks per second times the steps each task's rollouts take.
"""
from __future__ import annotations

from meta_dist.tasks.names import IMAGE_TASKS


def compare(results: list[dict], references: dict | None, env_steps_per_task: int = 0) -> list[dict]:
    """Each row's ratios: to the per-task loop and to the vmap program on the same number of threads (None
    where none ran), its tasks/s per worker relative to the first row, and (RL) its environment steps/s."""
    base = results[0]["tasks_per_s"] / results[0]["workers"]
    vmap = {v["threads"]: v["tasks_per_s"] for v in references["vmap"]} if references else {}
    on_gpu = bool(references) and references["loop"]["device"] == "cuda"
    for r in results:
        same_threads = references["vmap"][0]["tasks_per_s"] if on_gpu else vmap.get(r["workers"] * r["threads_per_worker"])
        r["speedup_vs_reference"] = r["tasks_per_s"] / references["loop"]["tasks_per_s"] if references else None
        r["speedup_vs_vmap"] = r["tasks_per_s"] / same_threads if same_threads else None
        r["scaling_efficiency"] = r["tasks_per_s"] / (r["workers"] * base)
        if env_steps_per_task:
            r["env_steps_per_s"] = r["tasks_per_s"] * env_steps_per_task
    return results


def reference_line(ref: dict) -> str:
    where = "on the GPU" if ref["device"] == "cuda" else f"{ref['threads']} torch thread{'s' * (ref['threads'] > 1)}"
    return f"reference (one process, {ref['kind']}, {where}): {ref['tasks_per_s']:.1f} tasks/s"


def workload_line(w: dict) -> str:
    if w.get("env_steps_per_task"):
        return (f"workload: {w['config']} ({w['algorithm']}, {w['task']}, meta-batch {w['meta_batch_size']}, "
                f"{w['env_steps_per_task']} environment steps per task, {w['model']})")
    order = "first-order" if w["first_order"] else "second-order"
    shape = (f"{w['ways']}-way {w['shots']}-shot, {w['num_query']} query per class" if w["task"] in IMAGE_TASKS
             else f"K={w['shots']}, {w['num_query']} query points")
    return (f"workload: {w['config']} ({w['algorithm']} {order}, {w['task']} {shape}, meta-batch "
            f"{w['meta_batch_size']}, {w['inner_steps']} inner step(s), {w['model']}; data: {w['data']})")


def _ratio(value: float | None) -> str:
    return f"{value:>6.2f}x" if value else f"{'-':>7}"


def channels_phrase(results: list[dict]) -> str:
    """How the driver reached its actors: compiled channels, kept to the end or given up for
    ordinary calls once steps waited long on them (backend.py), or ordinary calls throughout."""
    if not any(r["compiled_channels"] for r in results):
        return "; ordinary actor calls"
    closed = [r["workers"] for r in results if r["channels_open_at_end"] < r["compiled_channels"]]
    return "; actors reached through compiled channels" + (
        f" (ordinary calls by the end with {', '.join(map(str, closed))} workers: steps waited long on them)"
        if closed else "")


def format_table(report: dict) -> str:
    w = report["workload"]
    hw = w["hardware"]
    rl = bool(w.get("env_steps_per_task"))
    refs = report["references"]
    lines = [workload_line(w),
             f"hardware: {hw['cpu']}, {hw['cores']} cores; torch {hw['torch']}, ray {hw['ray']}",
             "workers: " + ("the driver computes as worker 0, the others are actors" if w["driver_worker"]
                            else "all actors (runtime.driver_worker off, or not applicable)")
             + channels_phrase(report["results"]),
             *(reference_line(v) for v in ([refs["loop"], *refs["vmap"]] if refs else [])),
             "",
             f"{'workers':>7} {'tasks/s':>8} " + (f"{'env st/s':>9} " if rl else f"{'vs ref':>7} {'vs vmap':>7} ")
             + f"{'effic.':>7} {'step ms':>8} {'median':>7} {'overhd ms':>9} {'drv ch':>6} | {'compute':>8} "
             f"{'wait':>6} {'comm':>6} {'aggr':>6} {'specs':>6} (ms/step)"]
    for r in report["results"]:
        s = {k: 1000 * v for k, v in r["time_split"].items()}
        versus = f"{r['env_steps_per_s']:>9.0f}" if rl else f"{_ratio(r['speedup_vs_reference'])} {_ratio(r['speedup_vs_vmap'])}"
        lines.append(f"{r['workers']:>7} {r['tasks_per_s']:>8.1f} {versus} "
                     f"{r['scaling_efficiency']:>7.2f} {r['step_ms']:>8.2f} {r['step_ms_median']:>7.2f} "
                     f"{r['overhead_ms_per_step']:>9.2f} {r['driver_chunks_per_step']:>6.2f} "
                     f"| {s['compute_s']:>8.2f} {s['wait_s']:>6.2f} {s['communication_s']:>6.2f} "
                     f"{s['aggregation_s']:>6.2f} {s['specs_s']:>6.2f}")
    for prev, r in zip(report["results"], report["results"][1:]):
        if r["step_ms"] > prev["step_ms"]:
            lines.append(f"note: a step with {r['workers']} workers took longer than with {prev['workers']}")
    lines.append("driver ingress per step (updates from actors): " + ", ".join(
        f"{r['workers']} worker(s) on {r['nodes']} node(s) {r['driver_ingress']['updates_per_step']:.1f} x "
        f"{r['driver_ingress']['bytes_per_step'] / max(r['driver_ingress']['updates_per_step'], 1) / 1024:.0f} KiB"
        for r in report["results"]))
    lines.append(("env st/s: environment steps per second; " if rl else
                  "vs vmap: against the vmap process on as many threads as the row's workers use in all; ")
                 + f"efficiency: tasks/s per worker relative to {w['scaling_base_workers']} worker(s); "
                 f"drv ch = chunks the driver computed per step; wait = mean idle of a worker behind the slowest")
    return "\n".join(lines)
