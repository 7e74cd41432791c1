"""Checkpoints: atomic, checksummed, pruned, safe to load; corrupt ones are detected and skipped."""
import random

import pytest
import torch

from meta_dist import checkpoint
from meta_dist.errors import UserError


def state(value: float) -> dict:
    params = {"w": torch.full((4, 3), value), "b": torch.zeros(3)}
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(15))])
    return {"params": params, "optimizer": opt.state_dict(), "version": int(value)}


def test_save_load_prune(tmp_path):
    for step in (10, 20, 30, 40):
        checkpoint.save(tmp_path, step, state(step), "run1", {"seed": 0}, keep=3)
    names = [p.name for p in checkpoint.list_checkpoints(tmp_path)]
    assert names == ["step_00000020", "step_00000030", "step_00000040"]
    latest = checkpoint.load_latest(tmp_path)
    assert latest.step == 40 and latest.run_id == "run1" and torch.equal(latest.params["w"], torch.full((4, 3), 40.0))
    raw = torch.load(latest.path / "state.pt", weights_only=True)  # loadable without arbitrary pickles
    assert set(raw) >= {"params", "optimizer", "step", "version", "torch_rng"}
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


def test_twenty_random_byte_flips_are_all_detected(tmp_path):
    rng = random.Random(0)
    detected = 0
    for trial in range(20):
        run = tmp_path / f"r{trial}"
        checkpoint.save(run, 1, state(1), "run", {}, keep=5)
        checkpoint.save(run, 2, state(2), "run", {}, keep=5)
        newest = checkpoint.list_checkpoints(run)[-1]
        target = newest / rng.choice(["state.pt", "manifest.json"])
        data = bytearray(target.read_bytes())
        pos = rng.randrange(len(data))
        data[pos] ^= 1 << rng.randrange(8)
        target.write_bytes(bytes(data))
        loaded = checkpoint.load_latest(run)
        detected += loaded.step == 1
    assert detected == 20


def test_truncated_newest_falls_back_and_all_corrupt_is_a_user_error(tmp_path, capsys):
    checkpoint.save(tmp_path, 1, state(1), "run", {}, keep=5)
    checkpoint.save(tmp_path, 2, state(2), "run", {}, keep=5)
    newest = checkpoint.list_checkpoints(tmp_path)[-1] / "state.pt"
    newest.write_bytes(newest.read_bytes()[:100])
    assert checkpoint.load_latest(tmp_path).step == 1
    assert "step_00000002 is corrupt" in capsys.readouterr().err
    oldest = checkpoint.list_checkpoints(tmp_path)[0] / "manifest.json"
    oldest.write_text("{}")
    with pytest.raises(UserError, match="all 2 checkpoints .* are corrupt"):
        checkpoint.load_latest(tmp_path)


def test_checkpoint_of_another_model_is_refused(tmp_path):
    checkpoint.save(tmp_path, 1, state(1), "run", {}, keep=2)
    ckpt = checkpoint.load_latest(tmp_path)
    with pytest.raises(UserError, match="parameters of another model"):
        checkpoint.check_compatible(ckpt, {"w": torch.zeros(5, 3), "b": torch.zeros(3)})


def test_resaving_a_step_replaces_it_only_when_complete(tmp_path):
    checkpoint.save(tmp_path, 5, state(1), "run", {}, keep=2)
    checkpoint.save(tmp_path, 5, state(2), "run", {}, keep=2)
    assert checkpoint.load_latest(tmp_path).params["w"][0, 0] == 2.0
    assert len(checkpoint.list_checkpoints(tmp_path)) == 1
