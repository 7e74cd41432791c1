"""A 3-node Ray cluster on one machine (ray.cluster_utils.Cluster, every node on 127.0.0.1):
workers spread over every node, and losing a node mid-run costs nothing but time."""
import pyarrow.parquet as pq
import pytest

from meta_dist.runtime.driver import Trainer
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
    assert pq.read_table(tmp_path / "run" / "metrics.parquet").column("step").to_pylist() == list(range(1, 13))
    assert final_digest(tmp_path / "run") == final_digest(reference_dir)
