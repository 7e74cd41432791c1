"""A 3-node Ray cluster on one machine (ray.cluster_utils.Cluster, every node on 127.0.0.1):
workers spread over every node, each step summed node by node into one update for the driver, and
losing a worker or a node mid-run costs nothing but time."""
import json

import pyarrow.parquet as pq
import pytest

from meta_dist.runtime.driver import Trainer
from tests.conftest import cli
from tests.helpers.runs import final_digest, small_config, train

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    nodes = [c.add_node(num_cpus=1) for _ in range(2)]
    c.wait_for_nodes()
    ray.init(address=c.address, namespace="meta-dist-test", log_to_driver=False)
    yield c, nodes
    ray.shutdown()
    c.shutdown()


def test_node_by_node_sums_equal_the_one_process_run_through_a_kill_and_a_nan_chunk(tmp_path, cluster, faults):
    # A NaN chunk on the node-by-node path is dropped as anywhere; a killed worker sends its step down
    # the chunk-by-chunk path, which re-dispatches the lost chunks.
    faults({"kind": "nan", "step": 2, "chunk": 1}, {"kind": "kill", "worker": 2, "step": 3})
    reference_dir = tmp_path / "ref"
    train(reference_dir, "runtime.backend=local")
    trainer = Trainer(small_config("runtime.backend=ray", "runtime.num_workers=3", "runtime.chunk_timeout_s=20"),
                      tmp_path / "run")
    trainer.run()
    assert trainer.backend.folded_steps == 2 and trainer.backend.lost_workers >= 1
    assert final_digest(tmp_path / "run") == final_digest(reference_dir)
    bad = pq.read_table(tmp_path / "run" / "metrics.parquet").column("bad_chunks").to_pylist()
    assert bad[1] == 1 and sum(bad) == 1


def test_the_driver_receives_one_update_per_step_from_three_nodes(cluster):
    c, _ = cluster
    done = cli("bench", "--config", "sinusoid_maml", "--address", c.address, "--workers", "3", "--duration-s", "1",
               "--set", "runtime.chunk_size=3", "--json", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    (row,) = report["results"]
    assert row["nodes"] == 3 and row["driver_ingress"]["updates_per_step"] == 1.0  # not one per chunk (9)
    assert row["driver_ingress"]["bytes_per_step"] == 4 * report["workload"]["num_params"]


# Last: it removes a node from the module's cluster.
def test_workers_land_on_every_node_and_survive_a_node_loss(tmp_path, cluster):
    c, nodes = cluster
    reference_dir = tmp_path / "ref"
    train(reference_dir, "runtime.backend=local")

    def remove_node_at_step_4(step, row):
        if step == 4:
            c.remove_node(nodes[0])

    cfg = small_config("runtime.backend=ray", "runtime.num_workers=3", "runtime.chunk_timeout_s=20")
    trainer = Trainer(cfg, tmp_path / "run", on_step=remove_node_at_step_4)
    trainer.run()
    node_ids = {info["node_id"] for info in trainer.backend.worker_info}
    assert len(node_ids) == 3, "SPREAD placement should put one worker on each node"
    assert not trainer.backend.compiled  # compiled channels serve only actors on the driver's node
    assert trainer.backend.lost_workers >= 1
    assert trainer.backend.folded_steps == 4  # then the lost node's step fell back, and the next ten
    assert pq.read_table(tmp_path / "run" / "metrics.parquet").column("step").to_pylist() == list(range(1, 13))
    assert final_digest(tmp_path / "run") == final_digest(reference_dir)
