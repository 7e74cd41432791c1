"""Classic bandit strategies on the RL^2 benchmark instances: random, UCB1 and Thompson sampling.

They play the same test instances (arm probabilities) as `evaluate` scores RL^2 on, with the same
reward draws (the environments' seeded uniforms, common random numbers), so the comparison in the
README is paired. Vectorized over instances with numpy; each strategy's own randomness (random
arms, Beta samples) comes from a generator seeded by (run seed, strategy).
"""
from __future__ import annotations

import math

import numpy as np

from meta_dist import tasks
from meta_dist.config import Config
from meta_dist.stats import mean_ci95
from meta_dist.tasks.spec import derive_seed


def play(strategy: str, probs: np.ndarray, uniforms: np.ndarray, rng: np.random.Generator,
         ucb_c: float = math.sqrt(2.0)) -> np.ndarray:
    """Total reward of one trial per instance: probs [N, k], uniforms [N, n] reward draws."""
    n_inst, k = probs.shape
    pulls, wins = np.zeros((n_inst, k)), np.zeros((n_inst, k))
    total = np.zeros(n_inst)
    rows = np.arange(n_inst)
    for t in range(uniforms.shape[1]):
        if strategy == "random":
            arm = rng.integers(0, k, n_inst)
        elif strategy == "ucb1":  # each arm once, then the upper confidence bound
            mean = wins / np.maximum(pulls, 1)
            bonus = ucb_c * np.sqrt(math.log(max(t, 1)) / np.maximum(pulls, 1))
            arm = np.where(t < k, t % k, np.argmax(np.where(pulls == 0, np.inf, mean + bonus), 1))
        elif strategy == "thompson":  # Beta(1, 1) priors
            arm = np.argmax(rng.beta(1.0 + wins, 1.0 + pulls - wins), 1)
        else:
            raise ValueError(f"unknown bandit strategy '{strategy}'; choose random, ucb1 or thompson")
        reward = (uniforms[:, t] < probs[rows, arm]).astype(np.float64)
        pulls[rows, arm] += 1
        wins[rows, arm] += reward
        total += reward
    return total


def bandit_baselines(config: Config, num_tasks: int | None = None, split: str | None = None,
                     strategies: tuple[str, ...] = ("random", "ucb1", "thompson")) -> dict:
    """{strategy: {"mean", "ci95", "tasks"}} on the evaluation instances of `config` (bandits):
    the specs `evaluate` uses (split, step 0, index i) and the reward draws of RL^2's eval trial."""
    if config.task.name != "bandits":
        raise ValueError(f"bandit baselines need task.name=bandits, got '{config.task.name}'")
    family = tasks.build(config)
    n = num_tasks or config.eval.num_tasks
    specs = [family.spec(config.seed, split or config.eval.split, 0, i) for i in range(n)]
    probs = np.array([s.params for s in specs], dtype=np.float32)
    uniforms = family.uniforms(specs, 1, ("eval",))[:, 0].numpy()
    out = {}
    for name in strategies:
        rng = np.random.default_rng(derive_seed("bandit_baseline", config.seed, name))
        totals = play(name, probs, uniforms, rng)
        mean, ci, finite, _ = mean_ci95(totals)
        out[name] = {"mean": mean, "ci95": ci, "tasks": finite}
    return out
