"""Meta-World task families on the real environments (metaworld 3.1, MuJoCo): the task sets and their
seeded specs, batched stepping against the gymnasium form, the success rule, RL^2 and MAML-RL on a few
short episodes, the evaluation record, and the one-line errors."""
from __future__ import annotations

import importlib.util
import warnings
from collections import Counter

import numpy as np
import pytest
import torch

from meta_dist import algorithms, config as config_mod, tasks
from meta_dist.errors import UserError
from meta_dist.evaluation import evaluate

RL2 = {"model": {"name": "policy_gru", "hidden_sizes": [16]}, "algorithm": {"name": "rl2"},
       "rl": {"horizon": 20, "num_episodes": 2, "reward_scale": 10.0, "normalize_advantage": True}}
MAML = {"model": {"name": "policy_mlp", "hidden_sizes": [16, 16]}, "algorithm": {"name": "maml_rl", "inner_lr": 0.1},
        "rl": {"horizon": 20, "num_episodes": 2}}


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    """One task-list cache for the module's tests, outside the user's home."""
    monkeypatch.setenv("META_DIST_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def setup(task: dict, base: dict = RL2, **sections):
    raw = {**base, "task": task, **sections}
    cfg = config_mod.validate(config_mod.from_dict(raw))
    family = tasks.build(cfg)
    return cfg, family, algorithms.build(cfg, family)


ML1 = {"name": "metaworld_ml1", "env": "reach-v3"}


def test_ml1_specs_are_seeded_and_a_step_uses_every_goal_once():
    _, family, _ = setup(ML1)
    goals = [family.spec(0, "train", 3, i).params for i in range(50)]
    assert sorted(g for _, g in goals) == list(range(50)) and {e for e, _ in goals} == {"reach-v3"}
    assert goals == [family.spec(0, "train", 3, i).params for i in range(50)]
    assert goals != [family.spec(0, "train", 4, i).params for i in range(50)]
    assert family.spec(0, "test", 0, 7).split == "test"
    with pytest.raises(UserError, match="eval.split=test"):
        family.spec(0, "val", 0, 0)


def test_ml10_meta_batches_cover_every_environment_evenly():
    _, family, _ = setup({"name": "metaworld_ml10"})
    batch = Counter(family.spec(0, "train", 5, i).params[0] for i in range(10))
    assert len(batch) == 10 and set(batch.values()) == {1}
    test = [family.spec(0, "test", 0, i).params for i in range(200)]
    per_class = Counter(e for e, _ in test)
    assert sorted(per_class) == ["door-close-v3", "drawer-open-v3", "lever-pull-v3", "shelf-place-v3",
                                 "sweep-into-v3"]
    assert set(per_class.values()) == {40} and len(set(test)) == 200


def test_batched_stepping_matches_the_gymnasium_environment():
    _, family, _ = setup(ML1)
    spec = family.spec(0, "train", 1, 0)
    vec = family.vec_env([spec], 1, ("k",))
    env = family.make_env(spec)
    obs, _ = env.reset(seed=vec.seeds[0])
    assert np.allclose(vec.reset()[0, 0].numpy(), obs.astype(np.float32))
    actions = torch.rand(20, 1, 1, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    for a in actions:
        v_obs, v_reward, _ = vec.step(a)
        obs, reward, *_ = env.step(a[0, 0].double().numpy())
        assert np.allclose(v_obs[0, 0].numpy(), obs.astype(np.float32)) and abs(float(v_reward) - reward) < 1e-4


@pytest.mark.filterwarnings("ignore:Constant:UserWarning")  # the scripted policy's own gain warning
def test_success_is_recorded_at_the_first_successful_step_and_kept():
    from metaworld.policies import SawyerReachV3Policy

    _, family, _ = setup(ML1, rl={**RL2["rl"], "horizon": 150})
    vec = family.vec_env([family.spec(0, "test", 0, 0)], 1, ("scripted",))
    obs, expert, seen = vec.reset(), SawyerReachV3Policy(), []
    for _ in range(150):
        full = obs[0, 0].double().numpy().copy()
        full[-3:] = vec.envs[0]._target_pos  # the expert reads the goal the policy is not shown
        obs, _, _ = vec.step(torch.from_numpy(expert.get_action(full).astype(np.float32)).view(1, 1, 4))
        seen.append(bool(vec.success[0, 0]))
    assert not seen[0] and seen[-1], "the scripted expert reaches the goal within 150 steps"
    first = seen.index(True)
    assert all(seen[first:])


def test_environments_emit_no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, family, alg = setup(ML1)
        alg.chunk_update(alg.init_params(0), [family.spec(0, "train", 1, i) for i in range(2)])


@pytest.mark.parametrize("base", [RL2, MAML], ids=["rl2", "maml_rl"])
def test_chunk_updates_are_finite_and_bitwise_reproducible(base):
    _, family, alg = setup(ML1, base)
    params, specs = alg.init_params(0), [family.spec(0, "train", 1, i) for i in range(2)]
    a, b = alg.chunk_update(params, specs), alg.chunk_update(params, specs)
    assert all(torch.isfinite(g).all() and torch.equal(g, b.grads[k]) for k, g in a.grads.items())
    assert a.metrics == b.metrics and 0.0 <= a.metrics["success"] <= 2.0
    assert any(bool(g.abs().sum() > 0) for g in a.grads.values())


def test_rl2_keeps_its_hidden_state_across_the_episodes_of_a_trial():
    _, family, alg = setup(ML1)
    trials = alg.rollout(alg.init_params(0), [family.spec(0, "train", 1, 0)], 1, ("t",))
    H = family.horizon
    assert trials.obs.shape == (1, 1, 2 * H, 39 + 4 + 2)
    first = trials.obs[0, 0, :, -1]
    assert first[0] == 1 and first[H] == 1 and first.sum() == 2  # a new episode starts at step H
    assert trials.success.shape == (1, 1, 2)
    assert alg.env_steps_per_task == 2 * H


def test_evaluation_reports_success_per_environment_and_the_versions():
    cfg, family, alg = setup(ML1, eval={"num_tasks": 3, "train_tasks": 2, "inner_steps": 1, "max_inner_steps": 1})
    result = evaluate(cfg, alg.init_params(0), step=0)
    assert result["metric"] == "success" and result["unit"] == "%" and result["tasks"] == 3
    assert set(result["per_task"]) == {"reach-v3"} and 0.0 <= result["per_task"]["reach-v3"] <= 100.0
    assert result["reward_version"] == "v2" and result["metaworld_version"].startswith("3.1")
    assert [p["inner_steps"] for p in result["curve"]] == [0, 1]  # RL^2: the trial's two episodes
    assert result["train_split"]["tasks"] == 2 and set(result["train_split"]["per_task"]) == {"reach-v3"}


def test_bad_settings_are_one_line_user_errors(monkeypatch):
    with pytest.raises(UserError, match="task.env='reach-v9' is not a Meta-World v3 environment"):
        setup({"name": "metaworld_ml1", "env": "reach-v9"})
    with pytest.raises(UserError, match="at most 500 steps"):
        setup(ML1, rl={**RL2["rl"], "horizon": 501})
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "metaworld" else real(name, *a))
    with pytest.raises(UserError, match=r"pip install 'meta-dist\[metaworld\]'"):
        setup(ML1)
