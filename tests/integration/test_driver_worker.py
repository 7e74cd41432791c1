"""The driver as worker 0 (`runtime.driver_worker`), on the local Ray that a run starts for itself
(no ray_local fixture here: the Trainer starts Ray as `meta-dist train` does and holds one CPU back
for the driver). Same invariants as the all-actor runtime: bitwise-identical parameters, and the
actor's faults absorbed, now by the driver."""
import logging

import pyarrow.parquet as pq
import pytest

from meta_dist.runtime.backend import LOCAL
from meta_dist.runtime.driver import Trainer
from tests.helpers.runs import final_digest, small_config, train

pytestmark = pytest.mark.integration

DRIVER_AND_ONE_ACTOR = ("runtime.backend=ray", "runtime.num_workers=2")


@pytest.fixture(autouse=True)
def own_local_ray(monkeypatch):
    import ray

    if ray.is_initialized():  # a Ray left by another module would make this run join it instead
        ray.shutdown()
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def test_driver_and_one_actor_reproduce_the_in_process_run_bitwise(tmp_path, reference, patient_channels):
    channels = []
    trainer = Trainer(small_config(*DRIVER_AND_ONE_ACTOR), tmp_path / "run",
                      on_step=lambda step, row: channels.append(sorted(trainer.backend.channels)))
    trainer.run()
    backend = trainer.backend
    assert backend.local is not None and backend.workers[0] is LOCAL and len(backend.workers) == 2
    assert channels == [[1]] * 12  # the actor, on the driver's node, is reached through a compiled channel
    assert [info["worker_id"] for info in backend.worker_info] == [0, 1]
    assert backend.worker_info[0]["pid"] != backend.worker_info[1]["pid"]
    assert backend.worker_info[1]["niceness"] == 0  # the run's own Ray: actors at the driver's priority
    assert final_digest(tmp_path / "run") == reference


def test_without_the_driver_worker_every_worker_is_an_actor(tmp_path, reference):
    trainer = Trainer(small_config(*DRIVER_AND_ONE_ACTOR, "runtime.driver_worker=false", "runtime.num_workers=1"),
                      tmp_path / "run")
    trainer.run()
    assert trainer.backend.local is None and LOCAL not in trainer.backend.workers
    assert final_digest(tmp_path / "run") == reference


def test_killed_actor_chunks_are_computed_by_the_driver(tmp_path, faults, reference, caplog):
    faults({"kind": "kill", "worker": 1, "step": 3})
    with caplog.at_level(logging.WARNING, logger="meta_dist"):
        train(tmp_path / "run", *DRIVER_AND_ONE_ACTOR)
    assert any("worker 1 lost during step 3" in r.getMessage() and r.getMessage().endswith("to worker 0")
               for r in caplog.records)
    assert pq.read_table(tmp_path / "run" / "metrics.parquet").column("step").to_pylist() == list(range(1, 13))
    assert final_digest(tmp_path / "run") == reference


def test_hung_actor_chunk_gets_a_backup_on_the_driver(tmp_path, faults, reference, caplog):
    # 25 tasks in chunks of 5: the driver computes chunks 0-1, the actor 2-4.
    faults({"kind": "hang", "worker": 1, "step": 2, "chunk": 2, "seconds": 6})
    with caplog.at_level(logging.WARNING, logger="meta_dist"):
        train(tmp_path / "run", *DRIVER_AND_ONE_ACTOR, "runtime.chunk_timeout_s=1.5")
    assert any("x runtime.chunk_timeout_s) on worker 1; backup on worker 0" in r.getMessage()
               for r in caplog.records)
    assert final_digest(tmp_path / "run") == reference
