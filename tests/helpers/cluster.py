"""A real two-node Ray cluster on loopback, in its own process, with the Jobs API on 127.0.0.1.

`ray start` cannot build it here: a joining `ray start` refuses to run while
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, and with it on, Ray rewrites 127.0.0.1 to the machine's external
address. Ray's own `ray.cluster_utils.Cluster` starts the same processes (GCS, two raylets, the
dashboard and a job agent per node) with every node on 127.0.0.1; this file runs one as a script and
`two_node_cluster()` runs that script for a test and stops all of it afterwards. The second node gets
its own temp dir and agent port, as a second machine would: two nodes sharing one unpacked copy of a
job's working_dir would replace it under each other's feet.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def two_node_cluster(head_cpus: int = 1, node_cpus: int = 1, ready_timeout_s: float = 180.0) -> Iterator[str]:
    """Yields the Jobs API URL of a head with `head_cpus` CPUs and a second node of `node_cpus`."""
    from tests.helpers.jobs import one_jobs_cluster_at_a_time

    with one_jobs_cluster_at_a_time(), _start_cluster(head_cpus, node_cpus, ready_timeout_s) as url:
        yield url


@contextlib.contextmanager
def _start_cluster(head_cpus: int, node_cpus: int, ready_timeout_s: float) -> Iterator[str]:
    from tests.helpers.jobs import free_port, kill_tree, rmtree_tolerating_vanished

    port = free_port()
    node_temp = tempfile.mkdtemp(prefix="rt-node-", dir="/tmp")  # Unix socket paths must stay short
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        env.pop(name, None)
    proc = subprocess.Popen([sys.executable, "-m", "tests.helpers.cluster", str(port), str(head_cpus), str(node_cpus),
                             node_temp], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + ready_timeout_s
        lines = []
        while not lines or not lines[-1].startswith("READY"):
            line = proc.stdout.readline()
            if not line and (proc.poll() is not None or time.monotonic() > deadline):
                raise RuntimeError("two-node cluster did not start:\n" + "".join(lines[-40:]))
            lines.append(line)
        url = f"http://127.0.0.1:{port}"
        _wait_for_job_agents(url, deadline)
        yield url
    finally:
        kill_tree(proc)
        rmtree_tolerating_vanished(node_temp)


def _wait_for_job_agents(url: str, deadline: float) -> None:
    """Until a trivial job runs: the agents register with the head some seconds after the nodes."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(url)
    while True:
        try:
            job = client.submit_job(entrypoint="true")
            while client.get_job_status(job) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
                time.sleep(0.5)
            return
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def main(dashboard_port: int, head_cpus: int, node_cpus: int, node_temp: str) -> None:
    from ray.cluster_utils import Cluster

    from tests.helpers.jobs import free_port

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": head_cpus, "include_dashboard": True, "dashboard_host": "127.0.0.1",
        "dashboard_port": dashboard_port, "dashboard_agent_listen_port": free_port()})
    cluster.add_node(num_cpus=node_cpus, dashboard_agent_listen_port=free_port(),
                     temp_dir=node_temp)
    cluster.wait_for_nodes()
    print("READY", cluster.address, flush=True)
    while True:  # until the test kills this process group
        time.sleep(1)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]), sys.argv[4])
