"""`meta-dist bench`: meta-training throughput at each worker count, against plain single processes.

For each worker count the real synchronous runtime (`RayBackend`, one thread per worker) runs meta-steps
for a fixed time after a short warm-up. In the same invocation, before Ray starts, two single-process
programs run on the same workload and tasks (`meta_dist.bench_loops`): the usual per-task loop on
torch's default threads, and the vmapped torch.func program on as many threads as each worker count
uses in all, so a row's `speedup_vs_vmap` compares equal numbers of cores.

Time split of a runtime step (means, seconds): `compute_s` is the slowest worker's summed chunk
time (the critical path); `aggregation_s` the driver's sum, outer step and broadcast; `specs_s` the
driver's task-spec derivation; `communication_s` the rest of the step (dispatch, (de)serialization,
scheduling, result transfer), so those four add up to the step. `wait_s` is how long the average
worker sat idle waiting for the slowest one (load imbalance); it is not on the critical path.
Overhead per step is the step time minus the slowest worker's compute.

Meta-RL workloads (maml_rl, rl2) are measured the same way, in environment steps per second beside
tasks per second, without the single-process references (bench_report.py).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import torch

from meta_dist import config as config_mod
from meta_dist.bench_loops import WARMUP_STEPS, PerTaskLoop, VmapLoop, measure
from meta_dist.bench_report import compare, format_table
from meta_dist.components import Components, build as build_components
from meta_dist.config import Config
from meta_dist.errors import UserError
from meta_dist.provenance import hardware
from meta_dist.tasks.names import IMAGE_DATASETS, IMAGE_TASKS, RL_TASKS
from meta_dist.tasks.spec import TaskFamily, derive_seed

MAX_SETTLING_S = 120.0  # the driver's share settles after its warm-up and a few rounds of trials
SUPERVISED_TASKS = ("sinusoid", *IMAGE_DATASETS)  # the reference loop's workloads (images: synthetic)


# -- the runtime -------------------------------------------------------------------------------------------
@dataclass
class StepTiming:
    step_s: float
    specs_s: float
    compute_s: float
    wait_s: float
    aggregation_s: float
    num_tasks: int
    driver_chunks: int
    ingress_updates: int
    ingress_bytes: int


def timed_step(backend, family: TaskFamily, cfg: Config, step: int) -> StepTiming:
    """One synchronous meta-step exactly as the driver runs it, with its time split."""
    from meta_dist.runtime.driver import sync_step

    o = sync_step(backend, family, cfg, step)
    busy = [o.busy_s.get(i, 0.0) for i in range(backend.num_workers)]
    driver_chunks = sum(r.worker_id == 0 for r in o.results) if backend.local is not None else 0
    return StepTiming(o.step_s, o.specs_s, o.compute_s, o.compute_s - sum(busy) / len(busy), o.aggregate_s,
                      o.num_tasks, driver_chunks, *backend.ingress)


def measure_runtime(config: Config, num_workers: int, init: dict, components: Components,
                    duration_s: float, session) -> dict:
    from meta_dist.runtime.backend import RayBackend

    cfg = config_mod.with_overrides(config, runtime={"num_workers": num_workers, **gpu_workers(config, num_workers)})
    family = components.family
    backend = RayBackend(cfg, init, components, session)
    built = len(backend.channels)
    # Steady state only: where the driver computes beside actors, its share is settled by timing steps.
    tuned = backend.local is not None and backend.num_workers > 1
    try:
        step, settle_until = 0, time.perf_counter() + MAX_SETTLING_S
        while step < WARMUP_STEPS or (tuned and not backend.driver_share.settled
                                      and time.perf_counter() < settle_until):
            step += 1
            timed_step(backend, family, cfg, step)
        timings, start = [], time.perf_counter()
        while time.perf_counter() - start < duration_s:
            step += 1
            timing = timed_step(backend, family, cfg, step)
            timings.append(timing)
        elapsed = time.perf_counter() - start
        still_open = len(backend.channels)  # long chunks switch a run to ordinary calls
    finally:
        backend.shutdown()
    nodes = len({info.get("node_id") or "driver" for info in backend.worker_info})
    return {**summarize(num_workers, timings, elapsed), "compiled_channels": built, "channels_open_at_end": still_open,
            "nodes": nodes, "threads_per_worker": cfg.runtime.threads_per_worker}


def summarize(num_workers: int, timings: list[StepTiming], elapsed_s: float) -> dict:
    mean = {k: float(np.mean([getattr(t, k) for t in timings])) for k in
            ("step_s", "specs_s", "compute_s", "wait_s", "aggregation_s")}
    communication = mean["step_s"] - mean["compute_s"] - mean["aggregation_s"] - mean["specs_s"]
    return {"workers": num_workers, "tasks_per_s": sum(t.num_tasks for t in timings) / elapsed_s,
            "steps": len(timings), "step_ms": 1000 * mean["step_s"],
            "step_ms_median": 1000 * float(np.median([t.step_s for t in timings])),
            "driver_chunks_per_step": float(np.mean([t.driver_chunks for t in timings])),
            "driver_ingress": {"updates_per_step": float(np.mean([t.ingress_updates for t in timings])),
                               "bytes_per_step": float(np.mean([t.ingress_bytes for t in timings]))},
            "overhead_ms_per_step": 1000 * (mean["step_s"] - mean["compute_s"]),
            "time_split": {"compute_s": mean["compute_s"], "wait_s": mean["wait_s"],
                           "communication_s": communication, "aggregation_s": mean["aggregation_s"],
                           "specs_s": mean["specs_s"]}}


# -- setup and validation ----------------------------------------------------------------------------------
def parse_workers(text: str) -> list[int]:
    counts = []
    for item in text.split(","):
        try:
            n = int(item.strip())
        except ValueError:
            raise UserError(f"--workers takes comma-separated positive integers (e.g. 1,2), got '{text}'") from None
        if n <= 0:
            raise UserError(f"--workers counts must be positive, got {n} in '{text}'")
        counts.append(n)
    return sorted(set(counts))


def gpu_workers(config: Config, num_workers: int) -> dict:
    """On a GPU bench, every worker a GPU actor, the cluster's GPUs shared evenly between them."""
    if not config.runtime.num_gpu_workers:
        return {}
    from meta_dist.runtime import placement

    gpus = placement.cluster_resources().get("GPU", 0.0)
    if gpus <= 0:
        raise UserError("--device cuda: the Ray cluster has no GPU; run on a machine (or cluster) with one")
    return {"num_gpu_workers": num_workers, "num_gpus_per_worker": min(1.0, gpus / num_workers)}


def bench_config(args: argparse.Namespace) -> Config:
    defaults = ["runtime.backend=ray", "runtime.mode=sync", "runtime.threads_per_worker=1"]
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda needs a CUDA GPU and a CUDA build of torch; torch.cuda.is_available() "
                            "is False here (drop --device for the CPU bench)")
        # GPU actors only: the driver never computes, and each count gets its own share of the GPUs.
        defaults += ["runtime.driver_worker=false", "runtime.num_gpu_workers=1", "runtime.num_gpus_per_worker=1"]
    address = [f"runtime.address={args.address}"] if args.address else []
    config = config_mod.validate(config_mod.load(args.config, defaults + list(args.set) + address))
    if bool(config.runtime.num_gpu_workers) != (args.device == "cuda"):
        raise UserError("bench chooses the GPU workers itself: pass --device cuda for a GPU bench and drop the "
                        "runtime.num_gpu_workers override")
    if config.runtime.backend != "ray" or config.runtime.mode != "sync":
        raise UserError("bench measures the synchronous Ray runtime; drop the runtime.backend / runtime.mode overrides")
    supervised = config.algorithm.name in ("maml", "fomaml") and config.task.name in SUPERVISED_TASKS
    if not supervised and config.task.name not in RL_TASKS:
        raise UserError(f"bench measures MAML/FOMAML on supervised tasks (against its reference loops) or meta-RL; "
                        f"config '{config.name}' runs {config.algorithm.name} on {config.task.name}")
    if args.duration_s <= 0:
        raise UserError(f"--duration-s must be positive, got {args.duration_s:g}")
    return config


def check_capacity(config: Config, counts: list[int], cpus: float, where: str, driver: int = 0) -> None:
    """Whether `cpus` hold each count's workers; `driver` = 1 when worker 0 is the driver and `cpus`
    are what Ray has left for the actors."""
    threads = config.runtime.threads_per_worker
    for n in counts:
        if (n - driver) * threads > cpus:
            raise UserError(f"--workers {n} needs {(n - driver) * threads} CPUs ({threads} thread(s) per worker"
                            f"{' besides the driver' if driver else ''}) but {where} has {cpus:g}; give counts "
                            f"up to {int(cpus // threads) + driver}")


def check_local_capacity(config: Config, counts: list[int]) -> None:
    """Before starting a local Ray (seconds), which gets at most this machine's CPUs. On a joined
    cluster, `RayBackend` raises the same kind of UserError when it reaches a count that cannot fit."""
    from meta_dist.runtime import placement

    if not placement.cluster_address(config):
        check_capacity(config, counts, float(placement.local_cpus()), "this machine")


@contextlib.contextmanager
def workload_data(config: Config, data_dir: str | None):
    """The task store for image workloads: --data, the config's, or a temporary synthetic one."""
    data_dir = data_dir or config.task.data_dir or None
    if config.task.name not in IMAGE_TASKS or data_dir:
        yield data_dir, data_dir or "generated"
        return
    from meta_dist.tasks.synthetic import write_synthetic_store

    per_class = max(20, config.task.shots + config.task.num_query)
    with tempfile.TemporaryDirectory(prefix="meta-dist-bench-") as tmp:
        path = write_synthetic_store(os.path.join(tmp, "store"), config.task.name, split_name=config.task.split,
                                     num_classes=(max(32, config.task.ways), 8, 8), per_class=per_class)
        yield str(path), "synthetic"


def describe(config: Config, data_label: str, session, num_params: int) -> dict:
    from meta_dist.runtime import placement

    a, t, m = config.algorithm, config.task, config.model
    return {"config": config.name, "algorithm": a.name, "first_order": a.first_order or a.name == "fomaml",
            "task": t.name, "ways": t.ways, "shots": t.shots, "num_query": t.num_query,
            "meta_batch_size": a.meta_batch_size, "inner_steps": a.inner_steps, "chunk_size": config.runtime.chunk_size,
            "threads_per_worker": config.runtime.threads_per_worker, "model": m.name, "num_params": num_params, "data": data_label,
            "driver_worker": placement.driver_computes(config, session), "compiled_graph": placement.compiled_may_apply(config),
            "reference_threads": torch.get_num_threads(), "device": "cuda" if config.runtime.num_gpu_workers else "cpu",
            "hardware": hardware()}


_START = time.monotonic()


def note(message: str) -> None:
    print(f"[{time.monotonic() - _START:6.1f} s] {message}", file=sys.stderr, flush=True)


# -- entry point ------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict:
    from meta_dist.runtime import placement

    counts = parse_workers(args.workers)
    config = bench_config(args)
    check_local_capacity(config, counts)
    with workload_data(config, args.data) as (data_dir, data_label), contextlib.ExitStack() as ray_session:
        components = build_components(config, data_dir)
        family = components.family
        algorithm = components.algorithm(config)
        init = algorithm.init_params(derive_seed("init", config.seed))
        # The references run on a quiet machine: before a local Ray starts (its start-up and prestarted
        # workers took up to a fifth of the loop's speed when it ran after), or once a cluster
        # address has been checked, so a bad one fails at once. Meta-RL workloads have none.
        joined = bool(placement.cluster_address(config))
        if joined:
            session = ray_session.enter_context(_ray(config, counts))
        env_steps = getattr(algorithm, "env_steps_per_task", 0)
        references = None if env_steps else measure_references(config, counts, (family, algorithm.model, init),
                                                               args.duration_s)
        if not joined:
            session = ray_session.enter_context(_ray(config, counts))
        results = []
        for n in counts:
            note(f"{n} worker(s), {args.duration_s:g} s")
            results.append(measure_runtime(config, n, init, components, args.duration_s, session))
        note("done")
        workload = describe(config, data_label, session, sum(v.numel() for v in init.values()))
    return {"workload": {**workload, "duration_s": args.duration_s, "scaling_base_workers": counts[0],
                         "env_steps_per_task": env_steps},
            "reference_tasks_per_s": references["loop"]["tasks_per_s"] if references else None,
            "references": references, "results": compare(results, references, env_steps)}


def measure_references(config: Config, counts: list[int], workload: tuple, duration_s: float) -> dict:
    """The per-task loop on torch's default threads, and the vmap program on each worker count's
    total threads (up to this machine's cores) and on the default; each from the same start. On a GPU
    bench, both programs once, on the first GPU."""
    default = torch.get_num_threads()
    if config.runtime.num_gpu_workers:
        note(f"per-task loop and torch.func vmap on cuda, {duration_s:g} s each")
        return {"loop": measure(PerTaskLoop(config, *workload, device="cuda"), duration_s, default),
                "vmap": [measure(VmapLoop(config, *workload, device="cuda"), duration_s, default)]}
    per_worker = config.runtime.threads_per_worker
    vmap_threads = sorted({default} | {n * per_worker for n in counts if n * per_worker <= (os.cpu_count() or 1)})
    note(f"per-task loop ({default} torch threads), {duration_s:g} s")
    loop = measure(PerTaskLoop(config, *workload), duration_s, default)
    vmapped = []
    for threads in vmap_threads:
        note(f"torch.func vmap ({threads} torch thread(s)), {duration_s:g} s")
        vmapped.append(measure(VmapLoop(config, *workload), duration_s, threads))
    return {"loop": loop, "vmap": vmapped}


@contextlib.contextmanager
def _ray(config: Config, counts: list[int]):
    """One Ray session for every worker count (each RayBackend reuses it; its shutdown leaves it up),
    checked to hold the largest count."""
    from meta_dist.runtime import placement

    session = placement.init_ray(config)
    try:
        driver = int(placement.driver_computes(config, session))
        check_capacity(config, counts, placement.cluster_resources().get("CPU", 0.0), "the Ray cluster", driver)
        yield session
    finally:
        if session.owned:
            placement.shutdown_ray()


def main(args: argparse.Namespace) -> int:
    # Ray prints worker log lines to the driver's stdout; with --json, stdout carries only the report.
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        report = run(args)
    print(json.dumps(report) if args.json else format_table(report), flush=True)
    return 0
