"""Connecting to Ray and checking that the requested workers can ever be placed.

Local mode starts a single-node Ray bound to 127.0.0.1 with no dashboard; a given address is
checked for reachability with a short socket probe first, so a typo fails in seconds with a clear
message instead of hanging. Resource requests are compared with the cluster's total resources
before any actor is created: a request that can never be met is a user error, not a hang.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from meta_dist.config import Config
from meta_dist.errors import UserError
from meta_dist.runtime import faults
from meta_dist.tasks import remote

LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def _probe(host: str, port: int, timeout_s: float = 3.0) -> None:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as e:
        raise UserError(f"cannot reach a Ray cluster at {host}:{port} ({e.strerror or e}); start one with "
                        f"`cluster/local.sh start` or `ray start --head`, or fix --address") from None


def cluster_address(config: Config) -> str:
    """The Ray cluster this run joins ('' = a local Ray of its own)."""
    return config.runtime.address or os.environ.get("RAY_ADDRESS", "")


def driver_may_compute(config: Config) -> bool:
    """Whether a local Ray that `init_ray` starts holds CPUs back for the driver to compute on
    (`runtime.driver_worker`): synchronous, CPU workers only, and no cluster to join (on a cluster, the
    driver's node's CPUs belong to Ray's scheduler)."""
    return _driver_eligible(config) and not cluster_address(config)


def _driver_eligible(config: Config) -> bool:
    return config.runtime.driver_worker and _sync_cpu_on_ray(config)


def _sync_cpu_on_ray(config: Config) -> bool:
    r = config.runtime
    return r.backend == "ray" and r.mode == "sync" and r.num_gpu_workers == 0


def compiled_may_apply(config: Config) -> bool:
    """Whether synchronous steps may reach actors through compiled channels (`runtime.compiled_graph`):
    synchronous, CPU workers only. `RayBackend` opens them only to actors on the driver's own node,
    where shared memory reaches; elsewhere, and in async mode, actors take ordinary calls."""
    return config.runtime.compiled_graph and _sync_cpu_on_ray(config)


@dataclass(frozen=True)
class RaySession:
    """What `init_ray` connected to: whether it started the local Ray (then `shutdown_ray` ends it), and
    the CPUs that belong to this process itself, where its driver may compute as worker 0: those held back
    from the local Ray it started, or those Ray assigned to it (a Ray Tune trial's own bundle)."""
    owned: bool = False
    driver_cpus: float = 0.0


def driver_computes(config: Config, session: RaySession) -> bool:
    """Whether the driver process is worker 0: eligible, and CPUs of its own to compute on."""
    return _driver_eligible(config) and 0 < config.runtime.threads_per_worker <= session.driver_cpus


def local_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def init_ray(config: Config, runtime_env: dict | None = None) -> RaySession:
    """Connect to (or start) Ray. A local Ray gets this machine's CPUs, less the driver worker's threads
    where the run is eligible for `runtime.driver_worker`. `runtime_env` is the job's (see
    `code_runtime_env`); inside a submitted job, the job's own applies."""
    import ray

    if ray.is_initialized():
        return RaySession(owned=False, driver_cpus=_assigned_cpus())
    for k, v in LOOPBACK_ENV.items():
        os.environ.setdefault(k, v)
    address = cluster_address(config)
    common = dict(namespace="meta-dist", log_to_driver=True, configure_logging=False,
                  runtime_env=None if _in_submitted_job() else runtime_env or None)
    if not address:
        cpus, threads = local_cpus(), config.runtime.threads_per_worker
        held = threads if driver_may_compute(config) and cpus >= threads else 0
        # Ray starts worker processes at niceness 15, below the driver. Here the actors are half of every
        # synchronous step, beside a driver that computes too: at 15 each wake-up of Ray's own processes
        # lands on them (measured on 2 cores, Omniglot: the actor 10% slower, 144.5 -> 154.9 tasks/s at 0).
        # address="local": a Ray of our own even where `ray start` left a cluster that ray.init() would join.
        ray.init(address="local", num_cpus=cpus - held, include_dashboard=False,
                 _node_ip_address="127.0.0.1",
                 _system_config={"worker_niceness": 0}, **common)
        return RaySession(owned=True, driver_cpus=held)
    if address.startswith("http://") or address.startswith("https://"):
        raise UserError(f"--address {address} is a Jobs API URL; use `meta-dist submit --address {address}` "
                        f"to submit a job, or give the cluster's GCS address (host:6379) to train against it")
    if address not in ("auto", "local") and not address.startswith("ray://"):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise UserError(f"--address '{address}' is not HOST:PORT (e.g. 127.0.0.1:6379), 'auto' or ray://HOST:PORT")
        _probe(host, int(port))
    try:
        ray.init(address=address, **common)
    except ConnectionError as e:
        raise UserError(f"cannot connect to the Ray cluster at '{address}': {str(e).splitlines()[0]}") from None
    return RaySession(owned=False, driver_cpus=0.0)


def _assigned_cpus() -> float:
    """CPUs Ray reserved for this process: none for a driver, its bundle's for a Ray Tune trial."""
    import ray

    try:
        assigned = ray.get_runtime_context().get_assigned_resources()
    except AssertionError:  # Ray's answer in a driver process, which holds no resources
        return 0.0
    return float(assigned.get("CPU", 0.0))


def actor_scheduling():
    """Where worker actors go: inside this process's placement group when it runs in one (a Ray Tune
    trial reserves its workers together), else spread over the cluster's nodes."""
    from ray.util import get_current_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    group = get_current_placement_group()
    return "SPREAD" if group is None else PlacementGroupSchedulingStrategy(group, placement_group_capture_child_tasks=True)


# What never travels with the user's code to the workers or a submitted job (gitignore patterns relative
# to the shipped folder): version control, environments, caches, run directories and task stores, which
# the workers read from their own disks. "/data" and "/runs" are anchored at the folder's root, so that a
# source package named e.g. `meta_dist/data/` still travels.
CODE_EXCLUDES = [".git", ".venv", "venv", "__pycache__", ".pytest_cache", "/data", "/runs", "checkpoints",
                 "*.arrow", "*.parquet", "*.egg-info"]


def code_runtime_env(code_dir: str | None, data_dir: str = "") -> dict:
    """The job-level runtime_env that ships `code_dir` (the user's modules) to every node as the workers'
    working_dir; the task store inside it, if any, stays behind."""
    if not code_dir:
        return {}
    excludes = list(CODE_EXCLUDES)
    if data_dir and not remote.is_remote(data_dir) and Path(data_dir).resolve().is_relative_to(Path(code_dir)):
        excludes.append("/" + Path(data_dir).resolve().relative_to(Path(code_dir)).as_posix())
    return {"working_dir": code_dir, "excludes": excludes}


def actor_runtime_env(code_dir: str | None) -> dict | None:
    """The runtime_env of the worker actors: the fault-injection plan when one is set (tests, drills).
    Where Ray was started by someone else without a working_dir, the workers import user modules from
    `code_dir` itself (PYTHONPATH), which reaches this node and shared filesystems only: a caller of
    `ray.init` who wants the code on other nodes passes runtime_env={"working_dir": ...} there."""
    env_vars = {k: os.environ[k] for k in (faults.ENV,) if k in os.environ}
    if code_dir and not _job_working_dir():
        env_vars["PYTHONPATH"] = os.pathsep.join(p for p in (code_dir, os.environ.get("PYTHONPATH", "")) if p)
    return {"env_vars": env_vars} if env_vars else None


def _job_working_dir() -> str:
    import ray

    return (ray.get_runtime_context().runtime_env or {}).get("working_dir", "") if ray.is_initialized() else ""


def _in_submitted_job() -> bool:
    """A Ray Jobs entrypoint: its runtime_env (the submitted working_dir) is set for it already."""
    return "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ


def worker_resources(config: Config, index: int) -> dict:
    """Ray resources of worker `index`: the first `num_gpu_workers` are GPU workers."""
    r = config.runtime
    if index < r.num_gpu_workers:
        return {"num_cpus": 1, "num_gpus": r.num_gpus_per_worker}
    return {"num_cpus": r.threads_per_worker, "num_gpus": 0}


def resolve_num_workers(config: Config, cluster: dict[str, float], session: RaySession = RaySession()) -> int:
    """Workers to run (0 = fill the cluster's CPUs, plus the driver when it computes); raises UserError
    if their actors can never be placed."""
    r = config.runtime
    driver = int(driver_computes(config, session))
    cpus, gpus = cluster.get("CPU", 0.0), cluster.get("GPU", 0.0)
    n = r.num_workers or max(1, driver + r.num_gpu_workers + int((cpus - r.num_gpu_workers) // r.threads_per_worker))
    actors = n - driver
    need_cpu = sum(worker_resources(config, i)["num_cpus"] for i in range(actors))
    need_gpu = sum(worker_resources(config, i)["num_gpus"] for i in range(actors))
    if need_cpu > cpus:
        held = " (worker 0 is the driver itself)" if driver else ""
        raise UserError(f"{actors} worker actors x {r.threads_per_worker} threads{held} need {need_cpu:g} CPUs but "
                        f"the Ray cluster has {cpus:g}; lower --workers (or runtime.threads_per_worker) or add nodes")
    if need_gpu > gpus + 1e-9:
        raise UserError(f"{r.num_gpu_workers} GPU workers x {r.num_gpus_per_worker:g} GPU need {need_gpu:g} GPUs but "
                        f"the Ray cluster has {gpus:g}; set runtime.num_gpu_workers=0 or add GPU nodes")
    return n


def cluster_resources() -> dict[str, float]:
    """Total resources of the connected cluster (CPU, GPU, ...)."""
    import ray

    return dict(ray.cluster_resources())


def shutdown_ray() -> None:
    """Shut down the Ray that `init_ray` started."""
    import ray

    ray.shutdown()
