"""Meta-Dataset's episode distribution over task stores: the paper's bounds on ways, queries, support
size and per-class shots, class imbalance, source weights, determinism, per-episode tensors, per-source
evaluation, and the one-line errors."""
from __future__ import annotations

import collections

import numpy as np
import pytest
import torch

from meta_dist import algorithms, config as config_mod, tasks
from meta_dist.errors import UserError
from meta_dist.evaluation import evaluate
from meta_dist.tasks.meta_dataset import MAX_QUERY, MAX_SUPPORT, MIN_WAYS, support_shots
from tests.helpers.stores import make_store


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("md")
    return {"big": make_store(root / "big", "big", [4 + (3 * c) % 29 for c in range(24)]),
            "small": make_store(root / "small", "small", [6] * 7)}


def load(*overrides: str) -> config_mod.Config:
    return config_mod.validate(config_mod.load(None, ["task.name=images", "task.episodes=meta_dataset",
                                                      "runtime.chunk_size=1", *overrides]))


def family(stores, *overrides, sources=None):
    srcs = sources or {"big": str(stores["big"]), "small": {"path": str(stores["small"]), "weight": 1}}
    return tasks.build(load(*overrides, f"task.sources={srcs}"))


def test_episodes_follow_the_papers_bounds_and_are_imbalanced(stores):
    fam = family(stores, sources={"big": str(stores["big"])})
    store = fam.sources["big"].store
    imbalanced = 0
    for i in range(150):
        s = fam.spec(5, "train", 1, i)
        images = [int(store.num_rows[c]) for c in s.classes]
        q, k = int(s.params[1]), [int(v) for v in s.params[2:]]
        assert s.params[0] == "big" and MIN_WAYS <= len(s.classes) <= 24 and len(set(s.classes)) == len(s.classes)
        assert q == min(MAX_QUERY, min(n // 2 for n in images))
        assert all(1 <= kc <= n - q for kc, n in zip(k, images)) and sum(k) <= MAX_SUPPORT
        assert len(s.rows) == sum(k) + q * len(k)
        imbalanced += len(set(k)) > 1
    assert imbalanced > 100  # shots differ between the classes of most episodes
    assert fam.spec(5, "train", 1, 7) == family(stores, sources={"big": str(stores["big"])}).spec(5, "train", 1, 7)
    assert fam.spec(5, "train", 1, 7) != fam.spec(5, "train", 2, 7)


def test_support_shots_spend_the_budget_in_proportion_to_class_size():
    import random

    images, q = [100, 100, 20, 20, 20], 10
    shots = [support_shots(random.Random(i), images, q) for i in range(300)]
    assert all(min(k) >= 1 and all(kc <= n - q for kc, n in zip(k, images)) for k in shots)
    big, small = np.mean([k[0] + k[1] for k in shots]), np.mean([k[2] + k[3] for k in shots])
    assert big > 2 * small  # the budget follows the image counts


def test_sources_are_drawn_by_weight_and_reported_per_source(stores):
    fam = family(stores, sources={"big": {"path": str(stores["big"]), "weight": 3}, "small": str(stores["small"])})
    counts = collections.Counter(fam.spec(0, "train", 1, i).params[0] for i in range(800))
    assert abs(counts["big"] / 800 - 0.75) < 0.06
    cfg = load("model.name=conv4", "model.channels=8", "algorithm.name=protonet", "eval.max_inner_steps=0",
               "eval.inner_steps=0", f"task.sources={{big: {stores['big']}, small: {stores['small']}}}")
    components_family = tasks.build(cfg)
    params = algorithms.build(cfg, components_family).init_params(0)
    result = evaluate(cfg, params, step=0, num_tasks=12)
    assert set(result["per_task"]) == {"big", "small"} and result["tasks"] == 12
    assert result["episodes"] == "meta_dataset" and "ways" not in result and "shots" not in result
    assert evaluate(cfg, params, step=0, num_tasks=12)["curve"] == result["curve"]


def test_an_episode_materializes_its_own_shape(stores):
    fam = family(stores, sources={"big": str(stores["big"])})
    s = fam.spec(1, "test", 0, 3)
    q, k = int(s.params[1]), [int(v) for v in s.params[2:]]
    b = fam.materialize([s])
    assert b.support_x.shape == (1, sum(k), 1, 16, 16) and b.query_x.shape == (1, q * len(k), 1, 16, 16)
    assert torch.bincount(b.support_y[0]).tolist() == k and torch.bincount(b.query_y[0]).tolist() == [q] * len(k)
    fixed = fam.spec(1, "test", 0, 3, ways=5, shots=2, num_query=2)
    assert len(fixed.classes) == 5 and fixed.params[1:] == (2.0, 2.0, 2.0, 2.0, 2.0, 2.0)


def test_bad_settings_are_one_line_errors(stores, tmp_path):
    with pytest.raises(UserError, match="runtime.chunk_size=1"):
        config_mod.validate(config_mod.load(None, ["task.name=images", "task.episodes=meta_dataset"]))
    with pytest.raises(UserError, match="task.name must be one of"):
        config_mod.validate(config_mod.load(None, ["task.episodes=meta_dataset", "runtime.chunk_size=1"]))
    with pytest.raises(UserError, match="drop within_alphabet"):
        load("task.within_alphabet=true")
    with pytest.raises(UserError, match="needs task stores"):
        tasks.build(load())
    with pytest.raises(UserError, match=r"task.sources.big must be a store path"):
        family(stores, sources={"big": {"path": str(stores["big"]), "weight": -1}})
    wide = make_store(tmp_path / "wide", "wide", [6] * 6, size=20)
    with pytest.raises(UserError, match="different shapes"):
        family(stores, sources={"big": str(stores["big"]), "wide": str(wide)}).input_shape


def test_proto_maml_starts_from_protonets_classifier_and_learns(stores):
    common = ["model.name=conv4", "model.channels=8", "algorithm.inner_lr=0.1", "algorithm.inner_steps=1",
              f"task.sources={{big: {stores['big']}}}"]
    proto_cfg, protonet_cfg = load("algorithm.name=proto_maml", *common), load("algorithm.name=protonet", *common)
    fam = tasks.build(proto_cfg)
    proto, protonet = algorithms.build(proto_cfg, fam), algorithms.build(protonet_cfg, fam)
    params = proto.init_params(0)
    specs = [fam.spec(0, "test", 0, i) for i in range(4)]
    for s in specs:  # after 0 steps the prototype layer ranks classes as ProtoNet's distances do
        curve = proto.eval_chunk(params, [s], max_steps=2, inner_lr=0.1)
        assert curve.shape == (1, 3) and torch.equal(curve[:, :1], protonet.eval_chunk(params, [s], 0, 0.0))
    out = proto.chunk_update(params, [fam.spec(0, "train", 1, 0)])
    assert set(out.grads) == set(params) and all(torch.isfinite(g).all() for g in out.grads.values())
    torch.manual_seed(0)
    opt = torch.optim.Adam([p.requires_grad_() for p in params.values()], lr=0.01)
    losses = []
    for step in range(12):
        out = proto.chunk_update({k: v.detach() for k, v in params.items()}, [fam.spec(0, "train", step, 0)])
        losses.append(out.metrics["meta_loss"])
        opt.zero_grad()
        for k, p in params.items():
            p.grad = out.grads[k]
        opt.step()
    assert np.mean(losses[-4:]) < np.mean(losses[:4])
