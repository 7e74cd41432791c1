"""Asynchronous (Stale Synchronous Parallel) mode: bounded staleness, complete step sequence,
worker loss, and its degenerate case (one worker) reducing exactly to synchronous mode."""
import json
import logging

import pyarrow.parquet as pq
import pytest

from meta_dist.runtime.faults import ENV
from tests.helpers.runs import final_digest, train

pytestmark = pytest.mark.integration


def test_one_worker_async_equals_sync_bitwise(tmp_path):
    train(tmp_path / "sync", "runtime.backend=local")
    train(tmp_path / "async", "runtime.backend=local", "runtime.mode=async")
    assert final_digest(tmp_path / "sync") == final_digest(tmp_path / "async")


@pytest.mark.parametrize("staleness", [0, 2])
def test_async_on_ray_respects_the_staleness_bound(tmp_path, ray_local, staleness):
    result = train(tmp_path / "run", "runtime.backend=ray", "runtime.num_workers=2", "runtime.mode=async",
                   f"runtime.staleness={staleness}", "steps=30")
    table = pq.read_table(tmp_path / "run" / "metrics.parquet").to_pydict()
    assert table["step"] == list(range(1, 31))
    assert all(n >= 25 for n in table["num_tasks"])
    assert max(table["staleness_mean"]) <= staleness
    assert result["mean"] == result["mean"]


def test_async_survives_a_killed_worker(tmp_path, ray_local, monkeypatch, caplog):
    monkeypatch.setenv(ENV, json.dumps({"once_dir": str(tmp_path / "once"),
                                        "faults": [{"kind": "kill", "worker": 1, "step": 3}]}))
    with caplog.at_level(logging.WARNING, logger="meta_dist"):
        # Ray reports a killed actor's in-flight call only once it notices the death (seconds, not
        # steps), so the run is long enough for the loss to be observed and the worker to return.
        train(tmp_path / "run", "runtime.backend=ray", "runtime.num_workers=2", "runtime.mode=async",
              "steps=150", "checkpoint.every=50")
    assert (tmp_path / "once" / "fault-0").exists()
    assert any("worker 1 lost" in r.getMessage() for r in caplog.records)
    assert pq.read_table(tmp_path / "run" / "metrics.parquet").column("step").to_pylist() == list(range(1, 151))
