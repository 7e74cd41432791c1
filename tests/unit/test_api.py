"""The Python API in one process: train returns the run, load gives the meta-trained network, adapt gives
a predictor that agrees with the evaluation routine, for gradient-based and metric-based methods."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import meta_dist
from meta_dist import api, checkpoint, config as C
from meta_dist.errors import UserError
from tests.helpers.byo.my_tasks import Blobs

FAST = {"steps": 6, "eval.num_tasks": 10, "eval.max_inner_steps": 3, "runtime.chunk_size": 4,
        "algorithm.meta_batch_size": 8, "checkpoint.every": 3}


def embedder(input_shape, output_dim):
    head = [nn.Linear(16, output_dim)] if output_dim else []
    return nn.Sequential(nn.Linear(input_shape[0], 16), nn.BatchNorm1d(16), nn.ReLU(), *head)


@pytest.fixture(scope="module")
def sinusoid_run(tmp_path_factory):
    return meta_dist.train(overrides=FAST, backend="local", run_dir=tmp_path_factory.mktemp("api") / "sinusoid")


def test_train_returns_the_run_and_load_gives_its_network(sinusoid_run):
    assert (sinusoid_run.run_dir / "eval.json").is_file() and sinusoid_run.config.steps == 6
    assert sinusoid_run.params_sha256 == sinusoid_run.eval["params_sha256"]
    net = meta_dist.load(sinusoid_run.run_dir)
    saved = checkpoint.load_latest(sinusoid_run.run_dir).params
    assert not net.training
    assert all(torch.equal(p, saved[n]) for n, p in net.named_parameters())
    x = torch.linspace(-5, 5, 7).unsqueeze(1)
    assert net(x).shape == (7, 1)


def _one_task(run: api.Run, index: int = 0):
    family = run.components.family
    spec = family.spec(run.config.seed, "test", 0, index)
    return spec, family.materialize([spec])


@pytest.mark.parametrize("steps", [0, 2])
def test_adapt_agrees_with_the_evaluation_routine_on_regression(sinusoid_run, steps):
    run = api.open_run(sinusoid_run.run_dir)
    spec, b = _one_task(run)
    predictor = meta_dist.adapt(run, b.support_x[0], b.support_y[0], steps=steps)
    mse = float(((predictor(b.query_x[0]) - b.query_y[0]) ** 2).mean())
    expected = run.algorithm().eval_chunk(run.checkpoint.params, [spec], steps, 0.0)[0, steps]
    assert mse == pytest.approx(float(expected), rel=1e-5)
    assert torch.equal(predictor.predict(b.query_x[0]), predictor(b.query_x[0]))


@pytest.mark.parametrize("algorithm", ["maml", "reptile", "protonet", "matchingnet", "metasgd", "anil", "proto_maml"])
def test_adapt_labels_a_new_task_for_every_family(tmp_path, algorithm):
    overrides = {**FAST, "algorithm.name": algorithm, "algorithm.inner_lr": 0.5, "algorithm.meta_lr": 0.01}
    result = meta_dist.train(overrides=overrides, task=Blobs(ways=3, shots=5), model=embedder, backend="local",
                             run_dir=tmp_path / algorithm)
    run = api.open_run(result.run_dir, task=Blobs(ways=3, shots=5))
    spec, b = _one_task(run, index=3)
    steps = 0 if algorithm in ("protonet", "matchingnet") else 2
    predictor = meta_dist.adapt(run, b.support_x[0], b.support_y[0], steps=steps)
    labels = predictor.predict(b.query_x[0])
    assert labels.shape == b.query_y[0].shape and predictor.ways == 3
    accuracy = float((labels == b.query_y[0]).float().mean())
    expected = run.algorithm().eval_chunk(run.checkpoint.params, [spec], steps, 0.0)[0, -1 if steps == 0 else steps]
    assert accuracy == pytest.approx(float(expected))


def test_adapt_refuses_a_class_count_the_head_cannot_serve(tmp_path):
    result = meta_dist.train(overrides=FAST | {"algorithm.inner_lr": 0.5}, task=Blobs(ways=3), model=embedder,
                             backend="local", run_dir=tmp_path / "maml")
    b = Blobs(ways=4).materialize(Blobs(ways=4).specs(0, "test", 0, 1))
    with pytest.raises(UserError, match="3-way output layer; the support set has 4 classes"):
        meta_dist.adapt(result.run_dir, b.support_x[0], b.support_y[0], task=Blobs(ways=3))
    with pytest.raises(UserError, match="pass the same object again"):
        meta_dist.load(result.run_dir)


def test_configs_and_overrides_from_python():
    config = api.resolve_config("omniglot_maml", {"algorithm.inner_lr": 0.2, "model.kwargs": {"a": [1, 2]}})
    assert config.algorithm.inner_lr == 0.2 and config.model.kwargs == {"a": [1, 2]}
    assert api.resolve_config({"steps": 3}, ["seed=4"]).seed == 4
    assert api.resolve_config(C.Config(), None) == C.Config()
    with pytest.raises(UserError, match="list of 'KEY=VALUE' strings"):
        api.resolve_config(None, "steps=3")
    with pytest.raises(UserError, match="must be a mapping of argument names"):
        api.resolve_config(None, ["model.kwargs=3"])


def test_library_calls_leave_the_callers_thread_count_alone(sinusoid_run, tmp_path):
    torch.set_num_threads(2)  # the caller's own choice (the fixture restores the original afterwards)
    meta_dist.evaluate(sinusoid_run.run_dir, tasks=5)
    assert torch.get_num_threads() == 2
    meta_dist.train(overrides={**FAST, "runtime.threads_per_worker": 1}, backend="local", run_dir=tmp_path / "r")
    assert torch.get_num_threads() == 2
