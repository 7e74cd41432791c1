"""MAML / first-order MAML / Reptile: the update rules themselves, not only "loss goes down".

The references here are independent implementations: a float64 finite-difference derivative of
the MAML objective, and per-task torch.autograd loops written out by hand.
"""
import pytest
import torch

from meta_dist import algorithms, config as C, tasks

SMALL = ["model.hidden_sizes=[8, 8]", "algorithm.meta_batch_size=3"]


def setup(*overrides):
    cfg = C.validate(C.load(None, [*SMALL, *overrides]))
    family = tasks.build(cfg)
    alg = algorithms.build(cfg, family)
    params = alg.init_params(123)
    specs = family.specs(7, "train", 1, 3)
    return cfg, family, alg, params, specs


def mlp64(params, x):
    """The MLP forward written out by hand, in float64 (independent of nn.Module/functional_call)."""
    h = x
    for i in (0, 2, 4):
        h = h @ params[f"net.{i}.weight"].T + params[f"net.{i}.bias"]
        if i != 4:
            h = torch.relu(h)
    return h


def maml_objective64(params, batch, inner_lr, inner_steps):
    """Sum over tasks of the query MSE after `inner_steps` differentiable SGD steps, float64."""
    total = 0.0
    for t in range(batch.num_tasks):
        fast = dict(params)
        for _ in range(inner_steps):
            loss = ((mlp64(fast, batch.support_x[t].double()) - batch.support_y[t].double()) ** 2).mean()
            grads = torch.autograd.grad(loss, list(fast.values()), create_graph=True)
            fast = {k: v - inner_lr * g for (k, v), g in zip(fast.items(), grads)}
        total = total + ((mlp64(fast, batch.query_x[t].double()) - batch.query_y[t].double()) ** 2).mean()
    return total


@pytest.mark.parametrize("inner_steps", [1, 2])
def test_maml_meta_gradient_matches_finite_differences(inner_steps):
    cfg, family, alg, params, specs = setup(f"algorithm.inner_steps={inner_steps}", "algorithm.inner_lr=0.05")
    out = alg.chunk_update(params, specs)
    batch = family.materialize(specs)
    p64 = {k: v.double() for k, v in params.items()}
    eps = 1e-6
    generator = torch.Generator().manual_seed(0)
    for name in ("net.0.weight", "net.2.bias", "net.4.weight"):
        flat = p64[name].reshape(-1)
        for idx in torch.randint(0, flat.numel(), (3,), generator=generator).tolist():
            plus = {k: v.clone() for k, v in p64.items()}
            minus = {k: v.clone() for k, v in p64.items()}
            plus[name].view(-1)[idx] += eps
            minus[name].view(-1)[idx] -= eps
            plus = {k: v.requires_grad_() for k, v in plus.items()}
            minus = {k: v.requires_grad_() for k, v in minus.items()}
            with torch.enable_grad():
                numeric = (maml_objective64(plus, batch, 0.05, inner_steps)
                           - maml_objective64(minus, batch, 0.05, inner_steps)) / (2 * eps)
            analytic = out.grads[name].reshape(-1)[idx].double()
            assert abs(float(analytic - numeric)) <= 1e-3 * max(1.0, abs(float(numeric))), (name, idx)


def test_second_order_terms_matter():
    """The second-order meta-gradient differs from the first-order one (a broken path would not)."""
    _, _, alg2, params, specs = setup("algorithm.inner_lr=0.1")
    _, _, alg1, _, _ = setup("algorithm.inner_lr=0.1", "algorithm.name=fomaml")
    g2, g1 = alg2.chunk_update(params, specs).grads, alg1.chunk_update(params, specs).grads
    assert any(not torch.allclose(g2[k], g1[k], atol=1e-5) for k in g2)


def test_fomaml_is_the_query_gradient_at_the_adapted_parameters():
    cfg, family, alg, params, specs = setup("algorithm.name=fomaml", "algorithm.inner_steps=2",
                                            "algorithm.inner_lr=0.05")
    out = alg.chunk_update(params, specs)
    batch = family.materialize(specs)
    expected = {k: torch.zeros_like(v) for k, v in params.items()}
    for t in range(batch.num_tasks):
        fast = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
        for _ in range(2):
            loss = ((mlp64(fast, batch.support_x[t]) - batch.support_y[t]) ** 2).mean()
            grads = torch.autograd.grad(loss, list(fast.values()))
            fast = {k: (v - 0.05 * g).detach().requires_grad_() for (k, v), g in zip(fast.items(), grads)}
        q = ((mlp64(fast, batch.query_x[t]) - batch.query_y[t]) ** 2).mean()
        for k, g in zip(fast, torch.autograd.grad(q, list(fast.values()))):
            expected[k] += g
    for k in params:
        torch.testing.assert_close(out.grads[k], expected[k], rtol=1e-4, atol=1e-5)


def test_reptile_update_is_theta_minus_phi_of_inner_sgd():
    cfg, family, alg, params, specs = setup("algorithm.name=reptile", "algorithm.inner_steps=3",
                                            "algorithm.inner_lr=0.02", "algorithm.inner_batch_size=4")
    out = alg.chunk_update(params, specs)
    batch = family.materialize(specs)
    expected = {k: torch.zeros_like(v) for k, v in params.items()}
    n = batch.support_x.shape[1]
    for t in range(batch.num_tasks):
        phi = {k: v.detach().clone() for k, v in params.items()}
        for i in range(3):
            idx = [(i * 4 + j) % n for j in range(4)]  # minibatches cycle through the task's data
            phi = {k: v.requires_grad_() for k, v in phi.items()}
            loss = ((mlp64(phi, batch.support_x[t][idx]) - batch.support_y[t][idx]) ** 2).mean()
            grads = torch.autograd.grad(loss, list(phi.values()))
            phi = {k: (v - 0.02 * g).detach() for (k, v), g in zip(phi.items(), grads)}
        for k in params:
            expected[k] += params[k] - phi[k]
    for k in params:
        torch.testing.assert_close(out.grads[k], expected[k], rtol=1e-4, atol=1e-6)


def adam_by_hand(params, x, y, second, done, steps, lr, bs):
    """One task's Reptile inner loop with Adam (beta1 = 0) from second moments `second` after `done` steps."""
    phi, second = {k: v.detach().clone() for k, v in params.items()}, dict(second)
    for i in range(steps):
        idx = [(i * bs + j) % x.shape[0] for j in range(bs)]
        phi = {k: v.requires_grad_() for k, v in phi.items()}
        grads = torch.autograd.grad(((mlp64(phi, x[idx]) - y[idx]) ** 2).mean(), list(phi.values()))
        new = {}
        for (k, v), g in zip(phi.items(), grads):
            second[k] = 0.999 * second[k] + 0.001 * g * g
            new[k] = (v - lr * g / ((second[k] / (1 - 0.999 ** (done + i + 1))).sqrt() + 1e-8)).detach()
        phi = new
    return phi, second


def test_reptile_carries_the_inner_adam_state_from_step_to_step():
    from meta_dist.params import ParamLayout
    from meta_dist.runtime.server import ParameterServer

    cfg, family, alg, params, specs = setup(
        "algorithm.name=reptile", "algorithm.inner_optimizer=adam", "algorithm.carry_inner_state=true",
        "algorithm.inner_steps=2", "algorithm.inner_lr=0.01", "algorithm.inner_batch_size=4",
        "algorithm.meta_optimizer=sgd", "algorithm.meta_lr=0.5")
    weights = [k for k in params if not k.startswith("meta.")]
    assert set(params) == {*weights, *("meta.state.adam_v." + k for k in weights), "meta.state.adam_t"}
    batch = family.materialize(specs)
    server, layout = ParameterServer(cfg, params), ParamLayout.of(params)
    state = {k: params["meta.state.adam_v." + k] for k in weights}
    for step, done in ((1, 0), (2, 2)):  # the second step starts from the first one's mean state
        current = server.named_params()
        out = alg.chunk_update(current, specs)
        tasks = [adam_by_hand({k: current[k] for k in weights}, batch.support_x[t], batch.support_y[t],
                              state, done, 2, 0.01, 4) for t in range(3)]
        for k in weights:
            torch.testing.assert_close(out.grads[k], sum(current[k] - phi[k] for phi, _ in tasks), rtol=1e-4, atol=1e-6)
        server.apply((layout.flatten(out.grads) / 3).numpy(), step)
        new = server.named_params()
        state = {k: sum(v[k] for _, v in tasks) / 3 for k in weights}
        for k in weights:  # weights take the outer step; the state becomes the tasks' mean
            torch.testing.assert_close(new[k], current[k] - 0.5 * out.grads[k] / 3)
            torch.testing.assert_close(new["meta.state.adam_v." + k], state[k], rtol=1e-4, atol=1e-12)
        assert float(new["meta.state.adam_t"]) == done + 2


def test_carrying_the_inner_state_needs_the_adam_inner_optimizer():
    from meta_dist.errors import UserError

    with pytest.raises(UserError, match="inner_optimizer: adam"):
        setup("algorithm.name=reptile", "algorithm.carry_inner_state=true")


def test_reptile_minibatches_interleave_the_classes():
    from meta_dist.algorithms.reptile import minibatch_order

    y = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])  # a class-major 3-way 3-shot support set
    assert minibatch_order(y) == [0, 3, 6, 1, 4, 7, 2, 5, 8]  # every minibatch of 3 holds each class once
    assert minibatch_order(torch.tensor([0, 1, 2, 3])) == [0, 1, 2, 3]  # 1-shot: as given
    assert minibatch_order(torch.tensor([[0.5], [-1.0], [2.0]]).squeeze(1)) == [0, 1, 2]  # regression: as given


@pytest.mark.parametrize("name", ["maml", "fomaml", "reptile"])
def test_vectorized_and_loop_paths_agree(name):
    _, _, fast_alg, params, specs = setup(f"algorithm.name={name}")
    _, _, loop_alg, _, _ = setup(f"algorithm.name={name}", "algorithm.vmap=false")
    a, b = fast_alg.chunk_update(params, specs), loop_alg.chunk_update(params, specs)
    for k in params:
        torch.testing.assert_close(a.grads[k], b.grads[k], rtol=1e-4, atol=1e-6)
    assert a.metrics["meta_loss"] == pytest.approx(b.metrics["meta_loss"], rel=1e-5)


def test_chunk_update_is_deterministic_and_stateless():
    _, _, alg, params, specs = setup()
    first = alg.chunk_update(params, specs)
    alg.chunk_update(params, specs[:1])  # other work in between changes nothing
    second = alg.chunk_update(params, specs)
    for k in params:
        assert torch.equal(first.grads[k], second.grads[k])


def test_eval_curve_shape_and_adaptation_reduces_mse_after_meta_training_steps():
    cfg, family, alg, params, _ = setup("algorithm.inner_lr=0.01")
    specs = [family.spec(0, "test", 0, i, num_query=50) for i in range(8)]
    curve = alg.eval_chunk(params, specs, max_steps=3, inner_lr=0.01)
    assert curve.shape == (8, 4) and torch.isfinite(curve).all()


def test_reptile_eval_curve_in_one_pass_equals_separate_fine_tunes():
    cfg, family, alg, params, _ = setup("algorithm.name=reptile", "algorithm.inner_optimizer=adam",
                                        "algorithm.inner_lr=0.01")
    specs = [family.spec(0, "test", 0, i, num_query=20) for i in range(4)]
    curve = alg.eval_chunk(params, specs, max_steps=4, inner_lr=0.01)
    batch = family.materialize(specs)
    base = alg.stack(params, 4)
    for s in (1, 3, 4):
        separate = alg.task_metrics(alg.inner_loop(base, batch.support_x, batch.support_y, s, 0.01),
                                    batch.query_x, batch.query_y)
        assert torch.equal(curve[:, s], separate)
