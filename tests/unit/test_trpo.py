"""MAML-RL's trust-region outer step: conjugate gradients, the Gaussian KL, the KL's Hessian-vector
product through the inner step, and the chunk's step itself."""
from __future__ import annotations

import pytest
import torch

from meta_dist.algorithms.rl.trpo import ChunkObjective, conjugate_gradient, gaussian_kl
from meta_dist.errors import UserError
from tests.unit.test_rl_algorithms import setup


def test_conjugate_gradient_solves_a_positive_definite_system():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    h, b = a @ a.T + 0.5 * torch.eye(6, dtype=torch.float64), torch.randn(6, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(conjugate_gradient(lambda v: h @ v, b, iters=6), torch.linalg.solve(h, b))


def test_gaussian_kl_is_torch_distributions_kl_summed_over_actions():
    gen = torch.Generator().manual_seed(1)
    m0, s0, m1, s1 = (torch.randn(4, 3, generator=gen) for _ in range(4))
    expected = torch.distributions.kl_divergence(torch.distributions.Normal(m0, s0.exp()),
                                                 torch.distributions.Normal(m1, s1.exp())).sum(-1)
    torch.testing.assert_close(gaussian_kl(m0, s0, m1, s1), expected)


def chunk_objective(first_order: bool = False):
    _, _, alg = setup("navigation2d", rl={"max_kl": 0.01}, algorithm={"first_order": first_order})
    params, specs = alg.init_params(0), alg.family.specs(0, "train", 1, 3)
    base = {k: v.detach() for k, v in params.items()}
    pres, fast, post = alg.sample(base, specs, create_graph=False)
    return alg, params, specs, ChunkObjective(alg, base, pres, {k: v.detach() for k, v in fast.items()}, post)


def test_the_kl_hessian_vector_product_is_the_kls_second_order_change_through_the_inner_step():
    """At theta_0 the KL is 0 with zero gradient, so KL(theta_0 +- e v) = e^2 / 2 v'Fv +- O(e^3)."""
    _, _, _, objective = chunk_objective()
    theta = objective.theta0.clone().requires_grad_()
    loss, kl = objective(theta, create_graph=True)
    assert abs(float(kl.detach())) < 1e-6
    grad_kl = torch.autograd.grad(kl, theta, create_graph=True)[0]
    v = torch.randn(theta.shape, generator=torch.Generator().manual_seed(2))
    curvature = float(v @ torch.autograd.grad(grad_kl @ v, theta)[0])
    eps = 1e-2
    (_, ahead), (_, behind) = (objective(objective.theta0 + s * eps * v, create_graph=False) for s in (1, -1))
    assert curvature > 0 and float(ahead + behind) / 2 == pytest.approx(eps ** 2 / 2 * curvature, rel=0.02)


@pytest.mark.parametrize("first_order", [False, True])
def test_a_chunk_step_stays_in_the_trust_region_improves_its_surrogate_and_repeats_bitwise(first_order):
    alg, params, specs, objective = chunk_objective(first_order)
    out, again = alg.chunk_update(params, specs), alg.chunk_update(params, specs)
    assert out.num_tasks == 3 and all(torch.equal(out.grads[k], again.grads[k]) for k in params)
    assert out.metrics == again.metrics
    assert any(bool(g.abs().sum() > 0) for g in out.grads.values())
    step = torch.cat([out.grads[k].reshape(-1) for k in objective.names]) / out.num_tasks
    before, _ = objective(objective.theta0, create_graph=False)
    after, kl = objective(objective.theta0 - step, create_graph=False)  # SGD, lr 1, on the mean
    assert float(after) < float(before) and 0 < float(kl) <= 0.01
    # the step comes back as (theta0 - theta) * 3 and is divided again, in float32: equal to ~1e-6
    assert out.metrics["kl"] / 3 == pytest.approx(float(kl), rel=1e-5)


def test_each_algorithms_outer_step_option_on_the_other_is_a_user_error():
    with pytest.raises(UserError, match="rl.max_kl applies to algorithm maml_rl"):
        setup("bandits", rl={"max_kl": 0.01})
    with pytest.raises(UserError, match="rl.ppo_epochs applies to algorithm rl2"):
        setup("navigation2d", rl={"ppo_epochs": 3})
