"""Every image-capable algorithm on a tiny generated store: finite, well-shaped, deterministic
chunk updates; the vmap and per-task loop paths agree; a few steps of training lower the loss; and
the metric methods' scores match hand computations."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from meta_dist import algorithms, config as config_mod, tasks
from meta_dist.algorithms.protonet import prototypes
from meta_dist.models.conv4 import Conv4
from meta_dist.tasks.store import ImageRow, write_store

GRADIENT = ("maml", "fomaml", "reptile", "metasgd", "anil", "proto_maml")
METRIC = ("protonet", "matchingnet", "siamese")
ALL = GRADIENT + METRIC


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    """8 classes (5 train, 3 test) of 16x16 images: a class pattern plus per-drawing noise, so classes are learnable."""
    rng = np.random.default_rng(0)
    rows = []
    for c in range(8):
        pattern = rng.random((16, 16, 1)) < 0.3
        for d in range(6):
            noisy = pattern ^ (rng.random((16, 16, 1)) < 0.05)
            rows.append(ImageRow(f"A/c{c}", (noisy * 255).astype(np.uint8), "A", f"c{c}", d))
    splits = {f"A/c{c}": [("train" if c < 5 else "test", 0)] for c in range(8)}
    return write_store(tmp_path_factory.mktemp("img") / "s", iter(rows), dataset="omniglot", split_name="vinyals",
                       image_shape=(1, 16, 16), class_splits=splits, rotations=False)


def setup(store_dir, name, *extra):
    torch.set_num_threads(1)
    model = "conv4" if name in METRIC else "conv4_strided"
    overrides = ["task.name=omniglot", "task.ways=3", "task.shots=2", "task.num_query=2", f"model.name={model}",
                 "model.channels=8", f"algorithm.name={name}", "algorithm.inner_lr=0.1", "algorithm.meta_batch_size=4",
                 "algorithm.inner_steps=2", *extra]
    cfg = config_mod.validate(config_mod.load(None, overrides))
    family = tasks.build(cfg, str(store_dir))
    return cfg, family, algorithms.build(cfg, family)


@pytest.mark.parametrize("name", ALL)
def test_chunk_update_is_finite_shaped_and_deterministic(store_dir, name):
    cfg, family, alg = setup(store_dir, name)
    params = alg.init_params(0)
    specs = family.specs(0, "train", 1, 4)
    out = alg.chunk_update(params, specs)
    assert set(out.grads) == set(params) and out.num_tasks == 4
    for k, g in out.grads.items():
        assert g.shape == params[k].shape and torch.isfinite(g).all(), k
    assert sum(float(g.abs().sum()) for g in out.grads.values()) > 0
    assert np.isfinite(out.metrics["meta_loss"]) and 0 <= out.metrics["accuracy"] <= 4
    again = alg.chunk_update(params, specs)
    assert all(torch.equal(out.grads[k], again.grads[k]) for k in params)


@pytest.mark.parametrize("name", ALL)
def test_vmap_and_loop_paths_agree(store_dir, name):
    _, family, batched = setup(store_dir, name, "algorithm.vmap=true")
    _, _, looped = setup(store_dir, name, "algorithm.vmap=false")
    params = batched.init_params(0)
    specs = family.specs(0, "train", 2, 4)
    a, b = batched.chunk_update(params, specs), looped.chunk_update(params, specs)
    for k in params:
        assert torch.allclose(a.grads[k], b.grads[k], rtol=1e-4, atol=1e-5), k
    assert a.metrics["meta_loss"] == pytest.approx(b.metrics["meta_loss"], rel=1e-5)
    ea = batched.eval_chunk(params, family.specs(0, "test", 0, 3), 2, 0.0, False)
    eb = looped.eval_chunk(params, family.specs(0, "test", 0, 3), 2, 0.0, False)
    assert torch.allclose(ea, eb)


@pytest.mark.parametrize("name", ALL)
def test_a_few_steps_lower_the_loss(store_dir, name):
    _, family, alg = setup(store_dir, name)
    params = {k: v.clone().requires_grad_() for k, v in alg.init_params(0).items()}
    # Reptile's update is theta - phi: its outer optimizer is plain SGD with step 1 (Nichol et al. 2018)
    optimizer = torch.optim.SGD(params.values(), lr=1.0) if name == "reptile" else torch.optim.Adam(params.values(), lr=0.01)
    specs = family.specs(0, "train", 1, 4)  # a fixed meta-batch: the loss on it must fall
    losses = []
    for _ in range(12):
        out = alg.chunk_update({k: v.detach() for k, v in params.items()}, specs)
        losses.append(out.metrics["meta_loss"] / out.num_tasks)
        for k, p in params.items():
            p.grad = out.grads[k] / out.num_tasks
        optimizer.step()
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:2]), losses


@pytest.mark.parametrize("name", ALL)
def test_eval_chunk_shape_and_range(store_dir, name):
    _, family, alg = setup(store_dir, name)
    params = alg.init_params(0)
    specs = [family.spec(0, "test", 0, i, ways=2, shots=1) for i in range(3)]
    for transductive in (False, True):
        acc = alg.eval_chunk(params, specs, 3, 0.0, transductive)
        assert acc.shape == (3, 1 if name in METRIC else 4)
        assert ((acc >= 0) & (acc <= 1)).all()


def test_metasgd_learns_its_step_sizes_and_anil_adapts_only_the_head(store_dir):
    _, family, alg = setup(store_dir, "metasgd")
    params = alg.init_params(0)
    lrs = [k for k in params if k.startswith("meta.lr.")]
    assert len(lrs) == len(alg.model_params(params))
    assert all(torch.equal(params[k], torch.full_like(params[k], 0.1)) for k in lrs)
    out = alg.chunk_update(params, family.specs(0, "train", 1, 4))
    assert all(float(out.grads[k].abs().sum()) > 0 for k in lrs)
    _, _, anil = setup(store_dir, "anil")
    assert anil.adapted_names(anil.init_params(0)) == ["head.weight", "head.bias"]


def test_protonet_prototypes_and_logits_by_hand(store_dir):
    support = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 4.0]]])
    support_y = torch.tensor([[0, 0, 1, 1]])
    assert torch.equal(prototypes(support, support_y, 2), torch.tensor([[[1.0, 0.0], [0.0, 3.0]]]))
    query = torch.tensor([[[1.0, 1.0], [0.0, 3.0]]])
    _, _, alg = setup(store_dir, "protonet")
    logits = alg.scores({}, support, support_y, query, 2)
    # |(1,1)-(1,0)|^2 = 1, |(1,1)-(0,3)|^2 = 5; |(0,3)-(1,0)|^2 = 10, |(0,3)-(0,3)|^2 = 0
    assert torch.equal(logits, torch.tensor([[[-1.0, -5.0], [-10.0, 0.0]]]))
    # the whole chunk update: loss = mean cross-entropy of those logits over the query set
    _, family, alg = setup(store_dir, "protonet")
    params = alg.init_params(0)
    specs = family.specs(0, "train", 1, 1)
    b = family.materialize(specs)
    alg.model.load_state_dict(params)
    with torch.no_grad():
        e = alg.model(torch.cat([b.support_x[0], b.query_x[0]]))  # support and query normalized together
    sup, qry = e[:6], e[6:]
    protos = torch.stack([sup[b.support_y[0] == c].mean(0) for c in range(3)])
    by_hand = torch.nn.functional.cross_entropy(-torch.cdist(qry, protos) ** 2, b.query_y[0])
    assert alg.chunk_update(params, specs).metrics["meta_loss"] == pytest.approx(float(by_hand), rel=1e-4)


def test_matching_and_siamese_scores_by_hand(store_dir):
    support = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    support_y = torch.tensor([[0, 1, 1]])
    query = torch.tensor([[[2.0, 0.0]]])
    _, _, matching = setup(store_dir, "matchingnet", "algorithm.distance=cosine")
    cos = torch.tensor([1.0, 0.0, 2 ** -0.5])
    attn = cos.softmax(0)
    expected = torch.log(torch.stack([attn[0], attn[1] + attn[2]]) + 1e-8)
    assert torch.allclose(matching.scores({}, support, support_y, query, 2)[0, 0], expected)
    _, _, siamese = setup(store_dir, "siamese")
    head = {"meta.siamese.weight": torch.tensor([[-1.0, -1.0]]), "meta.siamese.bias": torch.tensor([0.5])}
    # L1 distances from (2,0): 1, 3, 2 -> logits -0.5, -2.5, -1.5; class 1 takes its best support (-1.5)
    assert torch.allclose(siamese.scores(head, support, support_y, query, 2)[0, 0], torch.tensor([-0.5, -1.5]))


def test_support_statistics_keep_queries_independent():
    torch.manual_seed(0)
    net = Conv4((1, 16, 16), 8, 3)
    support, q1, q2 = torch.randn(4, 1, 16, 16), torch.randn(1, 1, 16, 16), torch.randn(5, 1, 16, 16)
    alone = net(torch.cat([support, q1]), stats_rows=4)[4]
    with_others = net(torch.cat([support, q1, q2]), stats_rows=4)[4]
    assert torch.allclose(alone, with_others, atol=1e-6)
    assert not torch.allclose(net(torch.cat([support, q1, q2]))[4], with_others, atol=1e-4)


@pytest.mark.parametrize("name", ["protonet", "matchingnet"])
def test_metric_scale_multiplies_the_similarities(store_dir, name):
    _, family, plain = setup(store_dir, name, "algorithm.distance=cosine")
    _, _, scaled = setup(store_dir, name, "algorithm.distance=cosine", "algorithm.metric_scale=10")
    params = plain.init_params(0)
    b = family.materialize(family.specs(0, "train", 1, 2))
    support, query = plain.embed(params, b, transductive=True)
    cosine = torch.nn.functional.cosine_similarity(query.unsqueeze(2), support.unsqueeze(1), dim=-1)
    torch.testing.assert_close(plain.similarity(query, support), cosine)
    torch.testing.assert_close(scaled.similarity(query, support), 10 * cosine)
    # a sharper softmax: the scaled scores separate the classes further than the paper's unscaled ones
    spread = lambda alg: float(alg.scores(params, support, b.support_y, query, 3).std(-1).mean())  # noqa: E731
    assert spread(scaled) > spread(plain)
