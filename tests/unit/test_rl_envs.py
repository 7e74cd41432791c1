"""Meta-RL task families: specs, reward definitions, seeding, and tensor == gymnasium environments."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from meta_dist import config as config_mod, tasks
from meta_dist.tasks.rl.bandits import BernoulliBanditEnv, VecBernoulliBandits
from meta_dist.tasks.rl.navigation import Navigation2DEnv


def family(name: str, **rl):
    cfg = config_mod.from_dict({"task": {"name": name}, "rl": rl})
    return tasks.build(config_mod.validate(cfg))


@pytest.mark.parametrize("name", ["navigation2d", "bandits", "cheetah_vel", "cheetah_dir"])
def test_specs_derive_from_their_arguments_only(name):
    fam = family(name)
    assert fam.metric == "return" and fam.name == name
    a, b = fam.spec(3, "train", 7, 2), fam.spec(3, "train", 7, 2, ways=5, shots=1)
    assert a == b
    assert fam.spec(3, "train", 7, 3) != a and fam.spec(3, "test", 7, 2) != a and fam.spec(4, "train", 7, 2) != a


def test_navigation_goals_and_reward_definition():
    fam = family("navigation2d")
    goals = np.array([fam.spec(0, "train", 1, i).params for i in range(500)])
    assert goals.shape == (500, 2) and np.abs(goals).max() <= 0.5 and goals.std() > 0.25
    env = fam.make_env(fam.spec(0, "train", 1, 0))
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2,) and np.all(obs == 0) and env.horizon == 100
    obs, reward, terminated, truncated, _ = env.step(np.array([0.5, -7.0]))  # clipped to [-1, 1], x 0.1
    np.testing.assert_allclose(obs, [0.05, -0.1], rtol=1e-6)
    assert reward == pytest.approx(-np.linalg.norm(obs - env.goal), rel=1e-6)
    assert not terminated and not truncated


def test_navigation_terminates_at_the_goal_and_truncates_at_the_horizon():
    env = Navigation2DEnv((0.05, 0.0), horizon=3)
    env.reset()
    assert env.step([0.5, 0.0])[2] is True
    env.reset()
    flags = [env.step([0.0, 1.0])[3] for _ in range(3)]
    assert flags == [False, False, True]


def test_navigation_vectorized_equals_gymnasium():
    fam = family("navigation2d")
    specs = fam.specs(0, "train", 1, 3)
    vec = fam.vec_env(specs, 2, "k")
    actions = torch.randn(30, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    vec_obs = [vec.reset()]
    vec_out = [vec.step(a) for a in actions]
    for t, spec in enumerate(specs):
        for e in range(2):
            env = fam.make_env(spec)
            assert np.array_equal(env.reset()[0], vec_obs[0][t, e].numpy())
            for s, a in enumerate(actions[:, t, e]):
                obs, reward, terminated, _, _ = env.step(a.numpy())
                assert np.array_equal(obs, vec_out[s][0][t, e].numpy())
                assert np.float32(reward) == vec_out[s][1][t, e].item()
                assert terminated == bool(vec_out[s][2][t, e])


def test_bandit_instances_observations_and_rewards():
    fam = family("bandits", num_arms=5, num_pulls=10)
    probs = np.array([fam.spec(0, "train", 1, i).params for i in range(1000)])
    assert probs.shape == (1000, 5) and probs.min() >= 0 and probs.max() <= 1
    assert abs(probs.mean() - 0.5) < 0.02
    env = fam.make_env(fam.spec(0, "train", 1, 0))
    obs, _ = env.reset(seed=1)
    assert obs.shape == (7,) and not obs.any()
    obs, reward, terminated, _, _ = env.step(3)
    assert reward in (0.0, 1.0) and obs[3] == 1 and obs[5] == reward and obs[6] == 1 and obs[:5].sum() == 1
    assert not terminated
    assert [env.step(0)[2] for _ in range(9)] == [False] * 8 + [True]
    sure = BernoulliBanditEnv([0.0, 1.0], num_pulls=4)
    sure.reset(seed=0)
    assert [sure.step(a)[1] for a in (1, 0, 1, 1)] == [1.0, 0.0, 1.0, 1.0]


def test_bandit_vectorized_equals_gymnasium_with_the_same_draws():
    fam = family("bandits", num_arms=5, num_pulls=10)
    specs = fam.specs(0, "train", 2, 4)
    actions = torch.randint(0, 5, (10, 4, 1), generator=torch.Generator().manual_seed(0))
    draws = np.stack([gym.utils.seeding.np_random(100 + i)[0].random(10).astype(np.float32) for i in range(4)])
    vec = VecBernoulliBandits(torch.tensor([s.params for s in specs]), torch.from_numpy(draws).unsqueeze(1))
    vec_first = vec.reset()
    vec_out = [vec.step(a) for a in actions]
    for i, spec in enumerate(specs):
        env = fam.make_env(spec)
        assert np.array_equal(env.reset(seed=100 + i)[0], vec_first[i, 0].numpy())
        for s in range(10):
            obs, reward, terminated, _, _ = env.step(int(actions[s, i, 0]))
            assert np.array_equal(obs, vec_out[s][0][i, 0].numpy())
            assert reward == vec_out[s][1][i, 0].item() and terminated == bool(vec_out[s][2][i, 0])


def test_bandit_reward_draws_are_seeded_per_task_and_key():
    fam = family("bandits")
    specs = fam.specs(0, "train", 1, 3)
    a = fam.uniforms(specs, 4, "x")
    assert a.shape == (3, 4, 10)
    assert torch.equal(a, fam.uniforms(specs, 4, "x"))
    assert torch.equal(a[1:], fam.uniforms(specs[1:], 4, "x"))  # a task's draws do not depend on its chunk
    assert not torch.equal(a, fam.uniforms(specs, 4, "y"))


@pytest.mark.parametrize("name", ["cheetah_vel", "cheetah_dir"])
def test_cheetah_rewards_and_vectorized_rollouts(name):
    fam = family(name, horizon=200)
    spec = fam.spec(0, "train", 1, 0)
    goal = spec.params[0]
    assert (0.0 <= goal <= 2.0) if name == "cheetah_vel" else goal in (-1.0, 1.0)
    env = fam.make_env(spec)
    obs, _ = env.reset(seed=5)
    assert obs.shape == (17,) and env.action_space.shape == (6,)
    action = np.full(6, 0.5, np.float32)
    _, reward, _, _, info = env.step(action)
    v, ctrl = info["x_velocity"], -0.05 * float(np.sum(action ** 2))
    assert info["reward_ctrl"] == pytest.approx(ctrl, rel=1e-5)
    expected = (goal * v if name == "cheetah_dir" else -abs(v - goal)) + ctrl
    assert reward == pytest.approx(expected, rel=1e-5)
    acts = torch.rand(5, 2, 2, 6, generator=torch.Generator().manual_seed(0)) * 2 - 1
    runs = []
    for _ in range(2):
        vec = fam.vec_env(fam.specs(0, "train", 1, 2), 2, "k")
        runs.append([vec.reset()] + [vec.step(a)[1] for a in acts])
    assert all(torch.equal(x, y) for x, y in zip(*runs))
    other = fam.vec_env(fam.specs(0, "train", 1, 2), 2, "other").reset()
    assert not torch.equal(other, runs[0][0])
    # the pooled tensor environment is the gymnasium environment, reset with the derived seed
    vec = fam.vec_env([spec], 1, "k")
    first = vec.reset()
    env = fam.make_env(spec)
    assert np.allclose(env.reset(seed=vec.seeds[0])[0], first[0, 0].numpy())
    for a in acts[:, 0, :1]:
        assert env.step(a[0].numpy())[1] == pytest.approx(vec.step(a.unsqueeze(0))[1].item(), rel=1e-5)
