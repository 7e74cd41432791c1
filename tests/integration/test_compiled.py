"""Compiled channels (`runtime.compiled_graph`): actors on the driver's node take a synchronous step's
chunks through a Ray Compiled Graph each. The invariants are those of ordinary actor calls: bitwise the
in-process parameters, and a lost or late worker absorbed, here by falling back to ordinary calls and
compiling the worker's channel again once it is back."""
import logging
import time

import pytest

from meta_dist.runtime import compiled as compiled_module
from meta_dist.runtime.driver import Trainer
from tests.conftest import answers_once_restarted
from tests.helpers.runs import final_digest, small_config

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("patient_channels")]

TWO_ACTORS = ("runtime.backend=ray", "runtime.num_workers=2")


class ChannelLog:
    """`on_step` hook: which workers had a compiled channel after each step. From `wait_at` on, it waits
    (up to 60 s) for every lost worker's restarted actor to answer, then for the backend's own revival
    pings to come back, so that the next step's check finds them answered: otherwise, on a loaded
    machine, the remaining steps (milliseconds each) could all pass before a reply arrives."""

    def __init__(self, wait_at: int | None = None):
        self.wait_at, self.trainer, self.after = wait_at, None, {}

    def __call__(self, step, row):
        backend = self.trainer.backend
        self.after[step] = sorted(backend.channels)
        if self.wait_at is None or step < self.wait_at:
            return
        import ray

        answers_once_restarted(ray, [w for w, ok in zip(backend.workers, backend.alive) if not ok], timeout_s=60)
        if backend._revival:  # answered or failed; a failed one is sent again at the next step
            ray.wait(list(backend._revival), num_returns=len(backend._revival), timeout=30)


def run(run_dir, *overrides, wait_at=None):
    hook = ChannelLog(wait_at)
    trainer = hook.trainer = Trainer(small_config(*overrides), run_dir, on_step=hook)
    trainer.run()
    return trainer, hook.after


def test_actors_take_steps_through_compiled_channels_bitwise(tmp_path, ray_local, reference):
    trainer, after = run(tmp_path / "run", *TWO_ACTORS)
    assert all(channels == [0, 1] for channels in after.values()), after
    assert trainer.backend.channels == {}  # closed at shutdown
    assert final_digest(tmp_path / "run") == reference


def test_with_compiled_graph_off_actors_take_ordinary_calls_bitwise(tmp_path, ray_local, reference):
    _, after = run(tmp_path / "run", *TWO_ACTORS, "runtime.compiled_graph=false")
    assert all(channels == [] for channels in after.values())
    assert final_digest(tmp_path / "run") == reference


def test_async_mode_never_opens_channels(tmp_path, ray_local):
    _, after = run(tmp_path / "run", *TWO_ACTORS, "runtime.mode=async")
    assert all(channels == [] for channels in after.values())


def test_worker_killed_on_its_channel_is_absorbed_then_its_channel_reopens(tmp_path, ray_local, reference,
                                                                           faults, caplog):
    faults({"kind": "kill", "worker": 1, "step": 3})
    with caplog.at_level(logging.WARNING, logger="meta_dist"):
        trainer, after = run(tmp_path / "run", *TWO_ACTORS, wait_at=6)
    assert any("worker 1 lost during step 3" in r.getMessage() and r.getMessage().endswith("to worker 0")
               for r in caplog.records)
    assert after[2] == [0, 1] and after[3] == [0]  # its chunks went to worker 0 through an ordinary call
    assert after[12] == [0, 1]  # compiled again once the restarted actor answered
    assert trainer.backend.lost_workers == 1
    assert final_digest(tmp_path / "run") == reference


def test_late_chunk_on_a_channel_gets_a_backup_and_its_worker_is_restarted(tmp_path, ray_local, reference,
                                                                          faults, caplog):
    faults({"kind": "hang", "worker": 0, "step": 2, "chunk": 0, "seconds": 30})
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="meta_dist"):
        trainer, after = run(tmp_path / "run", *TWO_ACTORS, "runtime.chunk_timeout_s=1.5", wait_at=5)
    assert any("x runtime.chunk_timeout_s) on worker 0; backup on worker 1" in r.getMessage()
               for r in caplog.records)
    assert after[1] == [0, 1] and after[2] == [1]
    assert after[12] == [0, 1]
    assert trainer.backend.backup_tasks == 1 and trainer.backend.lost_workers == 0
    assert time.monotonic() - start < 30, "the run waited for the hung chunk instead of restarting its worker"
    assert final_digest(tmp_path / "run") == reference


def test_worker_lost_between_steps_is_absorbed_when_its_channel_is_next_written(tmp_path, ray_local, reference,
                                                                                caplog):
    import ray

    hook = ChannelLog()

    def kill_after_step_3(step, row):
        hook(step, row)
        if step == 3:
            ray.kill(hook.trainer.backend.workers[1], no_restart=False)
            time.sleep(2)  # the death reaches the channel before step 4 writes to it

    trainer = hook.trainer = Trainer(small_config(*TWO_ACTORS), tmp_path / "run", on_step=kill_after_step_3)
    with caplog.at_level(logging.WARNING, logger="meta_dist"):
        trainer.run()
    assert any("worker 1 lost during step 4" in r.getMessage() for r in caplog.records)
    assert hook.after[3] == [0, 1] and hook.after[4] == [0]
    assert final_digest(tmp_path / "run") == reference


def test_steps_that_keep_waiting_on_channels_switch_to_ordinary_calls_bitwise(tmp_path, ray_local, reference,
                                                                             faults, monkeypatch):
    """Chunks of 0.3 s and more on three steps running: the driver stops polling channels for them. A slow
    first step (start-up on a loaded machine) may count as one of the three, so the channels close after
    step 3 or 4 (the exact count is tests/unit/test_placement.py's)."""
    monkeypatch.setattr(compiled_module, "SPIN_WAIT_S", 0.1)  # the shipped threshold, which patient_channels lifts
    faults(*({"kind": "hang", "worker": 1, "step": step, "seconds": 0.3} for step in (2, 3, 4)))
    trainer, after = run(tmp_path / "run", *TWO_ACTORS)
    assert after[1] == [0, 1] and after[4] == [] and after[12] == []
    assert trainer.backend.backup_tasks == 0 and trainer.backend.lost_workers == 0
    assert final_digest(tmp_path / "run") == reference
