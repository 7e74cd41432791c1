"""A worker actor that Ray restarts is built again from the constructor arguments the backend holds
for the run. Ray passes an argument too large to travel inline (a Meta-World family, say) through the
object store; here every argument goes that way (a 512-byte inline limit), so the restarted actor must
find the run's components still there, and the run must end on the in-process parameters."""
import pytest

from meta_dist.runtime.driver import Trainer
from tests.conftest import answers_once_restarted, local_ray
from tests.helpers.runs import final_digest, small_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ray_store_args():
    yield from local_ray(max_direct_call_object_size=512)


def test_a_killed_worker_restarts_from_arguments_held_in_the_object_store(tmp_path, ray_store_args, reference,
                                                                          faults):
    faults({"kind": "kill", "worker": 1, "step": 3})
    answers = []

    def ping_the_restarted_worker(step, row):
        if step == 5:  # its constructor ran again, from the held arguments, or this raises
            answers.extend(answers_once_restarted(ray_store_args, [trainer.backend.workers[1]], timeout_s=60))

    trainer = Trainer(small_config("runtime.backend=ray", "runtime.num_workers=2"), tmp_path / "run",
                      on_step=ping_the_restarted_worker)
    trainer.run()
    assert trainer.backend.lost_workers == 1 and answers[0]["worker_id"] == 1
    assert final_digest(tmp_path / "run") == reference


def test_the_last_live_worker_is_waited_for_not_backed_up_onto_itself(tmp_path, ray_store_args, reference, faults,
                                                                      caplog):
    """Worker 0 is gone for good after step 2; at step 4 worker 1, alone, holds its call of 5 chunks past
    their allowance (5 x 1.5 s). Nobody is left to take a backup, so the step waits for it."""
    import logging

    faults({"kind": "hang", "worker": 1, "step": 4, "seconds": 10})

    def remove_worker_0(step, row):
        if step == 2:
            ray_store_args.kill(trainer.backend.workers[0], no_restart=True)

    trainer = Trainer(small_config("runtime.backend=ray", "runtime.num_workers=2", "runtime.chunk_timeout_s=1.5"),
                      tmp_path / "run", on_step=remove_worker_0)
    with caplog.at_level(logging.WARNING, logger="meta_dist"):
        trainer.run()
    assert trainer.backend.alive == [False, True] and trainer.backend.backup_tasks == 0
    assert not any("backup" in r.getMessage() for r in caplog.records)
    assert final_digest(tmp_path / "run") == reference
