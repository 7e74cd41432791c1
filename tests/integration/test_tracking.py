"""TensorBoard and MLflow logging, read back with the tools' own readers: every step once, the values of
metrics.parquet, across a driver killed between checkpoints and resumed."""
from __future__ import annotations

import json
import sys

import pyarrow.parquet as pq
import pytest

from meta_dist import config as C
from meta_dist.errors import UserError
from meta_dist.runtime.driver import Trainer
from meta_dist.tracking import MLflowLog
from tests.conftest import cli

FAST = ["--backend", "local", "--steps", "12", "--set", "checkpoint.every=4", "--set", "eval.num_tasks=20",
        "--set", "eval.max_inner_steps=2", "--set", "runtime.chunk_size=5"]


def tensorboard_scalars(log_dir, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def mlflow_history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    from mlflow.tracking import MlflowClient

    return sorted((m.step, m.value) for m in MlflowClient(uri).get_metric_history(run_id, key))


def test_both_loggers_hold_every_step_once_after_a_killed_driver_resumes(tmp_path, faults):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_dir = tmp_path / "run"
    faults({"kind": "kill_driver", "step": 10})
    env = {"MLFLOW_TRACKING_URI": uri}
    # With a database store MLflow puts artifacts under ./mlruns: run where that is the test's own.
    killed = cli("train", *FAST, "--tensorboard", "--mlflow", "--run-dir", str(run_dir), env=env, cwd=tmp_path)
    assert killed.returncode == -9, killed.stderr
    resumed = cli("train", "--resume", "--run-dir", str(run_dir), env=env, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from step_00000008" in resumed.stderr

    rows = pq.read_table(run_dir / "metrics.parquet").to_pylist()
    assert [r["step"] for r in rows] == list(range(1, 13))
    board = tensorboard_scalars(run_dir / "tensorboard", "train/meta_loss")
    assert [s for s, _ in board] == list(range(1, 13))
    assert [v for _, v in board] == pytest.approx([r["meta_loss"] for r in rows], rel=1e-6)

    saved = json.loads((run_dir / "mlflow.json").read_text())
    assert saved["tracking_uri"] == uri
    history = mlflow_history(uri, saved["run_id"], "meta_loss")
    assert history == [(r["step"], r["meta_loss"]) for r in rows]
    result = json.loads((run_dir / "eval.json").read_text())
    assert mlflow_history(uri, saved["run_id"], "eval_mse") == [(12, result["mean"])]
    assert tensorboard_scalars(run_dir / "tensorboard", "eval/mse") == [(12, pytest.approx(result["mean"]))]
    curve = tensorboard_scalars(run_dir / "tensorboard" / "eval_step12", "eval/mse")
    assert [s for s, _ in curve] == [0, 1, 2]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    run = client.get_run(saved["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["algorithm.inner_lr"] == "0.01" and run.data.params["steps"] == "12"
    assert {a.path for a in client.list_artifacts(saved["run_id"])} >= {"eval.json", "curve.png", "config.yaml"}


def test_a_resumed_mlflow_run_is_sent_only_the_steps_it_lacks(tmp_path, monkeypatch):
    """The driver died after sending steps past its checkpoint: their re-run values are not sent again."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    config = C.load(None, ["logging.mlflow=true"])
    rows = [{"step": s, "meta_loss": 1.0 / s, "wall_time": 1e9 + s, "num_tasks": 25} for s in range(1, 13)]
    first = MLflowLog(tmp_path, config, "run0")
    first.rows(rows[:10])
    first.flush()  # steps 1..10 sent; the checkpoint it resumes from is at step 8
    second = MLflowLog(tmp_path, config, "run0")
    assert second.run_id == first.run_id and second.last_sent == 10
    second.backfill(rows[:8])
    for row in rows[8:]:
        second.rows([{**row, "meta_loss": -1.0}])  # a re-run step with another value
    second.close("FINISHED")
    history = mlflow_history(uri, first.run_id, "meta_loss")
    assert [s for s, _ in history] == list(range(1, 13))
    assert [v for s, v in history if s <= 10] == [1.0 / s for s in range(1, 11)]


def test_a_resumed_run_whose_mlflow_store_is_gone_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'a.db'}")
    monkeypatch.chdir(tmp_path)
    config = C.load(None, ["logging.mlflow=true"])
    MLflowLog(tmp_path, config, "run0").close("FINISHED")
    saved = json.loads((tmp_path / "mlflow.json").read_text())
    other = f"sqlite:///{tmp_path / 'b.db'}"  # a store that never held the run (moved, or another one)
    (tmp_path / "mlflow.json").write_text(json.dumps({**saved, "tracking_uri": other}))
    with pytest.raises(UserError, match="is not in the tracking store"):
        MLflowLog(tmp_path, config, "run0")


@pytest.mark.parametrize("logger", ["tensorboard", "mlflow"])
def test_a_logger_without_its_package_names_the_extra_and_writes_nothing(tmp_path, monkeypatch, logger):
    monkeypatch.setitem(sys.modules, logger, None)  # as if not installed
    config = C.validate(C.load(None, [f"logging.{logger}=true", "runtime.backend=local"]))
    with pytest.raises(UserError, match=r"meta-dist\[tracking\]"):
        Trainer(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
