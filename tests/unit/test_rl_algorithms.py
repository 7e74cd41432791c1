"""Meta-RL algorithms: MAML-RL and RL^2 chunk updates, returns/GAE/baseline maths, bandit baselines."""
from __future__ import annotations

import pytest
import torch

from meta_dist import algorithms, config as config_mod, tasks
from meta_dist.algorithms.rl import common
from meta_dist.algorithms.rl.baselines import bandit_baselines
from meta_dist.errors import UserError


def setup(name: str, **overrides):
    base = {
        "navigation2d": {"task": {"name": "navigation2d"}, "model": {"name": "policy_mlp", "hidden_sizes": [32, 32]},
                         "algorithm": {"name": "maml_rl", "inner_lr": 0.1},
                         "rl": {"horizon": 30, "num_episodes": 8}},
        "bandits": {"task": {"name": "bandits"}, "model": {"name": "policy_gru", "hidden_sizes": [32]},
                    "algorithm": {"name": "rl2"}, "rl": {"num_trials": 4, "entropy_coef": 0.01}},
        "navigation2d_rl2": {"task": {"name": "navigation2d"}, "model": {"name": "policy_gru", "hidden_sizes": [32]},
                             "algorithm": {"name": "rl2"}, "rl": {"horizon": 30, "num_episodes": 3, "num_trials": 2}},
    }[name]
    for section, values in overrides.items():
        base[section] = {**base.get(section, {}), **values}
    cfg = config_mod.validate(config_mod.from_dict(base))
    family = tasks.build(cfg)
    return cfg, family, algorithms.build(cfg, family)


@pytest.mark.parametrize("name,first_order", [("navigation2d", False), ("navigation2d", True), ("bandits", False),
                                              ("navigation2d_rl2", False)])
def test_chunk_update_is_finite_shaped_and_bitwise_reproducible(name, first_order):
    cfg, family, alg = setup(name, algorithm={"first_order": first_order})
    params = alg.init_params(0)
    specs = family.specs(0, "train", 1, 3)
    a, b = alg.chunk_update(params, specs), alg.chunk_update(params, specs)
    assert a.num_tasks == 3 and set(a.grads) == set(params)
    for k, v in params.items():
        assert a.grads[k].shape == v.shape and torch.isfinite(a.grads[k]).all()
        assert torch.equal(a.grads[k], b.grads[k])
    assert a.metrics == b.metrics and {"meta_loss", "return"} <= set(a.metrics)
    assert any(bool(g.abs().sum() > 0) for g in a.grads.values())
    other = alg.chunk_update(params, family.specs(0, "train", 2, 3))  # other tasks, other episodes
    assert not all(torch.equal(a.grads[k], other.grads[k]) for k in params)


def test_second_order_meta_gradient_differs_from_first_order():
    _, family, second = setup("navigation2d")
    _, _, first = setup("navigation2d", algorithm={"first_order": True})
    params, specs = second.init_params(0), family.specs(0, "train", 1, 2)
    g2, g1 = second.chunk_update(params, specs).grads, first.chunk_update(params, specs).grads
    assert not torch.allclose(g2["net.0.weight"], g1["net.0.weight"])


def test_one_inner_policy_gradient_step_improves_navigation_return():
    _, family, alg = setup("navigation2d", rl={"horizon": 100, "num_episodes": 20},
                           model={"hidden_sizes": [100, 100]})
    curve = alg.eval_chunk(alg.init_params(0), family.specs(0, "test", 0, 20), 2, 0.1)
    assert curve.shape == (20, 3)
    mean = curve.mean(0)
    assert mean[1] > mean[0] + 1.0 and mean[2] > mean[1]


def test_rl2_samples_at_the_current_policy_so_the_ppo_ratio_is_one():
    _, family, alg = setup("bandits")
    params, specs = alg.init_params(0), family.specs(0, "train", 1, 3)
    trials = alg.rollout(params, specs, 4, "k")
    assert trials.obs.shape == (3, 4, 10, 7) and trials.actions.shape == (3, 4, 10)
    logits, _, _ = alg.policy(params, trials.obs.reshape(12, 10, 7))
    log_p = torch.log_softmax(logits, -1).view(3, 4, 10, 5).gather(-1, trials.actions.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(log_p, trials.log_probs, rtol=0, atol=1e-6)
    assert set(trials.actions.unique().tolist()) == set(range(5))  # near-uniform initial policy
    scores = alg.eval_chunk(params, specs, 0, 0.0)
    assert scores.shape == (3, 1) and bool(((scores >= 0) & (scores <= 10)).all())


def test_a_linear_entropy_schedule_anneals_the_bonus_to_zero_by_the_last_step():
    cfg, family, alg = setup("bandits", rl={"entropy_coef": 0.05, "entropy_schedule": "linear"})
    _, _, no_bonus = setup("bandits", rl={"entropy_coef": 0.0})
    assert alg.entropy_coef(1) == 0.05 and alg.entropy_coef(cfg.steps // 2 + 1) == pytest.approx(0.025)
    params, last = alg.init_params(0), family.specs(0, "train", cfg.steps + 1, 2)  # the bonus is 0 here
    annealed, plain = alg.chunk_update(params, last).grads, no_bonus.chunk_update(params, last).grads
    assert all(torch.equal(annealed[k], plain[k]) for k in params)  # same trials, no bonus left
    first = family.specs(0, "train", 1, 2)
    assert not torch.equal(alg.chunk_update(params, first).grads["pi.weight"],
                           no_bonus.chunk_update(params, first).grads["pi.weight"])


def test_ppo_epochs_return_the_chunks_parameter_change_which_lowers_its_loss():
    """With rl.ppo_epochs the chunk runs PPO's epochs itself: the update is (params - locally optimized
    params) x tasks, the same on every call, and applying its mean lowers the chunk's loss on its trials."""
    _, family, alg = setup("bandits", rl={"ppo_epochs": 4}, algorithm={"inner_lr": 0.003})
    params, specs = alg.init_params(0), family.specs(0, "train", 1, 3)
    out, again = alg.chunk_update(params, specs), alg.chunk_update(params, specs)
    assert out.num_tasks == 3 and all(torch.equal(out.grads[k], again.grads[k]) for k in params)
    assert all(torch.isfinite(g).all() for g in out.grads.values())
    moved = {k: v - out.grads[k] / out.num_tasks for k, v in params.items()}  # SGD, lr 1, on the mean
    trials = alg.rollout(params, specs, alg.config.rl.num_trials, ("train",))
    before, _ = alg.task_losses(params, trials, 0.01)
    after, _ = alg.task_losses(moved, trials, 0.01)
    assert float(after.mean()) < float(before.mean())
    assert abs(out.metrics["meta_loss"] - float(before.sum())) < 1e-4  # metrics are the first epoch's


def test_discounted_returns_and_gae_match_a_hand_computation():
    r = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    v = torch.tensor([[0.5, 1.0, 1.5, 9.0]])
    m = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # terminated after the third step
    gamma, lam = 0.9, 0.8
    torch.testing.assert_close(common.discounted_returns(r, m, gamma),
                               torch.tensor([[1 + 0.9 * 2 + 0.81 * 3, 2 + 0.9 * 3, 3.0, 0.0]]))
    d0, d1, d2 = 1 + gamma * 1.0 - 0.5, 2 + gamma * 1.5 - 1.0, 3 + 0.0 - 1.5
    expected = torch.tensor([[d0 + gamma * lam * d1 + (gamma * lam) ** 2 * d2, d1 + gamma * lam * d2, d2, 0.0]])
    torch.testing.assert_close(common.gae(r, v, m, gamma, lam), expected)
    # lambda = 1: GAE is the discounted return minus the baseline
    torch.testing.assert_close(common.gae(r, v, m, gamma, 1.0), (common.discounted_returns(r, m, gamma) - v) * m)


def test_linear_feature_baseline_is_exact_on_a_linear_target_and_ignores_masked_steps():
    gen = torch.Generator().manual_seed(0)
    obs = torch.rand(2, 5, 30, 3, generator=gen) - 0.5
    features = common.baseline_features(obs)
    assert features.shape == (2, 5, 30, 3 * 2 + 4)
    w = torch.randn(2, 10, generator=gen)
    target = torch.einsum("tehf,tf->teh", features, w)
    mask = torch.ones(2, 5, 30)
    mask[:, :, 20:] = 0
    noisy = torch.where(mask.bool(), target, torch.full_like(target, 1e3))
    fitted = common.fit_linear_baseline(features, noisy, mask)
    torch.testing.assert_close(fitted, target * mask, rtol=0, atol=1e-3)


def test_ucb1_and_thompson_beat_random_on_1000_bandit_instances():
    cfg, _, _ = setup("bandits")
    results = bandit_baselines(cfg, 1000)
    assert set(results) == {"random", "ucb1", "thompson"}
    assert abs(results["random"]["mean"] - 5.0) < 0.25
    assert results["ucb1"]["mean"] > results["random"]["mean"] + 0.5
    assert results["thompson"]["mean"] > results["random"]["mean"] + 0.5
    assert results == bandit_baselines(cfg, 1000)


def test_maml_rl_test_protocol_samples_its_own_episode_count_and_shrinks_later_steps():
    _, family, alg = setup("navigation2d", rl={"eval_episodes": 5, "eval_lr_decay": 0.5})
    params, specs = alg.init_params(0), family.specs(0, "test", 0, 2)
    curve = alg.eval_chunk(params, specs, 2, 0.0)
    fast = alg.stack(params, 2)
    for s, lr in ((0, 0.1), (1, 0.05)):  # the config's step, then half of it
        traj = alg.rollout(fast, specs, ("eval", s), 5)
        assert traj.obs.shape[:2] == (2, 5)
        assert torch.equal(curve[:, s], traj.task_metric("return"))
        fast = {k: v.detach() for k, v in alg.adapt(fast, traj, lr, create_graph=False).items()}
    assert torch.equal(curve[:, 2], alg.rollout(fast, specs, ("eval", 2), 5).task_metric("return"))
    with pytest.raises(UserError, match="RL\\^2 adapts without them"):
        setup("navigation2d_rl2", rl={"eval_episodes": 40})


def test_mismatched_model_or_task_is_a_user_error():
    with pytest.raises(UserError, match="policy_mlp"):
        setup("navigation2d", model={"name": "policy_gru"})
    with pytest.raises(UserError, match="recurrent policy"):
        setup("navigation2d", algorithm={"name": "rl2"})
