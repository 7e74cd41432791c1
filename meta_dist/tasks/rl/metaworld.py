"""Meta-World v3 (Yu et al. 2019): the ML1, ML10 and ML45 meta-RL benchmarks on Sawyer manipulation.

The task sets are Meta-World's own: `metaworld.ML1(env, seed)`, `ML10(seed)` and `ML45(seed)` build
the train and test tasks (an environment class and a goal each, 50 goals per class), seeded with the
run seed; the test classes of ML10 / ML45 are environments never seen in training. The goal is
hidden from the observation (39 numbers), so a policy must find it from the reward.

A spec (seed, split, step, index) picks a class and a goal: the classes of the split are taken in
turn from an offset drawn for (seed, split, step), and each class's goals in a permutation drawn
for the same key, so a meta-batch of `k * classes` tasks holds every class k times and never
repeats a goal until all are used. Evaluation (step 0, indices 0..n-1) therefore covers every test
class evenly. Episodes last `rl.horizon` steps (500 is the benchmark's `max_path_length`); an
episode succeeds if `info["success"]` is 1 at any step, Meta-World's evaluation rule.

Building a benchmark instantiates every class to sample goals (ML45: ~30 s), so the task lists are
cached on disk per (benchmark, env, seed, Meta-World version). `VecMetaWorld` steps a pool of
environments, one per (task, episode), reused across rollouts and reset with spec-derived seeds.
"""
from __future__ import annotations

import os
import pickle
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from meta_dist.errors import UserError
from meta_dist.tasks.remote import CACHE_ENV
from meta_dist.tasks.rl import RLTaskFamily, VecEnv
from meta_dist.tasks.spec import TaskSpec, derive_seed

BENCHMARKS = {"metaworld_ml1": "ML1", "metaworld_ml10": "ML10", "metaworld_ml45": "ML45"}
"""task.name -> Meta-World benchmark class."""
REWARD_VERSION = "v2"
"""Meta-World's reward functions: v2 is its default and the one the v3 benchmark results use."""
MAX_PATH_LENGTH = 500


def cache_dir() -> Path:
    """Next to the task stores' cache: $META_DIST_CACHE_DIR/metaworld, else ~/.cache/meta-dist/metaworld."""
    base = os.environ.get(CACHE_ENV)
    return Path(base) / "metaworld" if base else Path.home() / ".cache" / "meta-dist" / "metaworld"


def benchmark_tasks(benchmark: str, env: str, seed: int) -> dict[str, list[tuple[str, bytes]]]:
    """{"train": [(class name, task data)], "test": [...]} of a Meta-World benchmark, from the disk cache
    or built (and cached with an atomic rename, so concurrent workers never read half a file)."""
    path = cache_dir() / f"{version('metaworld')}-{benchmark}-{env if benchmark == 'ML1' else 'all'}-{seed}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    import metaworld

    bench = metaworld.ML1(env, seed=seed) if benchmark == "ML1" else getattr(metaworld, benchmark)(seed=seed)
    tasks = {split: [(t.env_name, t.data) for t in getattr(bench, f"{split}_tasks")] for split in ("train", "test")}
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as f:
        f.write(pickle.dumps(tasks))
    os.replace(f.name, path)
    return tasks


def new_env(env_name: str):
    """A Meta-World environment of one class with the benchmark's reward version (set_task before use)."""
    import metaworld

    return metaworld.ALL_V3_ENVIRONMENTS[env_name](reward_function_version=REWARD_VERSION)


def task(env_name: str, data: bytes):
    import metaworld

    return metaworld.Task(env_name=env_name, data=data)


class VecMetaWorld(VecEnv):
    """[T, E] Meta-World environments stepped in turn; `success` [T, E] records success at any step."""

    def __init__(self, envs: list, seeds: list[int], num_tasks: int, num_episodes: int):
        self.envs, self.seeds = envs, seeds
        self.num_tasks, self.num_episodes = num_tasks, num_episodes
        self.success = torch.zeros(num_tasks, num_episodes, dtype=torch.bool)

    def _stack(self, arrays) -> torch.Tensor:
        return torch.from_numpy(np.stack(arrays).astype(np.float32)).view(self.num_tasks, self.num_episodes, -1)

    def reset(self) -> torch.Tensor:
        self.success.zero_()
        return self._stack([env.reset(seed=s)[0] for env, s in zip(self.envs, self.seeds)])

    def step(self, actions: torch.Tensor):
        flat = actions.clamp(-1.0, 1.0).reshape(len(self.envs), -1).double().numpy()
        out = [env.step(a) for env, a in zip(self.envs, flat)]
        shape = (self.num_tasks, self.num_episodes)
        reward = torch.tensor([o[1] for o in out], dtype=torch.float32).view(shape)
        self.success |= torch.tensor([bool(o[4]["success"]) for o in out]).view(shape)
        terminated = torch.tensor([bool(o[2]) for o in out]).view(shape)
        return self._stack([o[0] for o in out]), reward, terminated


class MetaWorldTasks(RLTaskFamily):
    metric = "success"
    obs_dim = 39
    action_dim = 4

    def __init__(self, config):
        super().__init__(config)
        self.name, self.benchmark = config.task.name, BENCHMARKS[config.task.name]
        if self.horizon > MAX_PATH_LENGTH:
            raise UserError(f"rl.horizon={self.horizon}: Meta-World episodes last at most {MAX_PATH_LENGTH} steps "
                            f"(the benchmark's max_path_length); set rl.horizon <= {MAX_PATH_LENGTH}")
        env = config.task.env
        if self.benchmark == "ML1" and env not in _env_names():
            raise UserError(f"task.env={env!r} is not a Meta-World v3 environment; choose one of "
                            f"{', '.join(sorted(_env_names())[:4])}, ... (metaworld.ALL_V3_ENVIRONMENTS)")
        tasks = benchmark_tasks(self.benchmark, env, config.seed)
        self.goals = {split: _by_class(t) for split, t in tasks.items()}
        self._pool: dict[str, list] = {}

    @staticmethod
    def versions() -> dict[str, str]:
        return {"metaworld_version": version("metaworld"), "reward_version": REWARD_VERSION}

    def _split(self, split: str) -> dict[str, list[bytes]]:
        if split not in self.goals:
            raise UserError(f"Meta-World has train and test tasks, not '{split}'; use eval.split=test")
        return self.goals[split]

    def spec(self, seed, split, step, index, **ignored) -> TaskSpec:
        by_class = self._split(split)
        names = list(by_class)
        rng = np.random.default_rng(derive_seed("metaworld", seed, split, step))
        offset = int(rng.integers(len(names)))
        perms = [rng.permutation(len(by_class[n])) for n in names]
        k = (index + offset) % len(names)
        goal = int(perms[k][(index // len(names)) % len(perms[k])])
        return TaskSpec(self.name, split, step, index, derive_seed("env", seed, split, step, index),
                        params=(names[k], goal))

    def task_group(self, spec: TaskSpec) -> str:
        """The environment class of a task: evaluation reports success per class."""
        return spec.params[0]

    def task_of(self, spec: TaskSpec):
        """Meta-World's Task (class name and goal data) behind a spec."""
        env_name, goal = spec.params
        return task(env_name, self._split(spec.split)[env_name][goal])

    def make_env(self, spec: TaskSpec):
        import gymnasium as gym

        env = new_env(spec.params[0])
        env.set_task(self.task_of(spec))
        return gym.wrappers.TimeLimit(env, self.horizon)

    def vec_env(self, specs: Sequence[TaskSpec], num_episodes: int, key=None) -> VecMetaWorld:
        envs, seeds, used = [], [], {}
        for spec in specs:
            env_name = spec.params[0]
            pool = self._pool.setdefault(env_name, [])
            for e in range(num_episodes):
                i = used[env_name] = used.get(env_name, -1) + 1
                if i == len(pool):
                    pool.append(new_env(env_name))
                pool[i].set_task(self.task_of(spec))
                envs.append(pool[i])
                seeds.append(self.env_seed(spec, key, e) % 2**32)
        return VecMetaWorld(envs, seeds, len(specs), num_episodes)


def _by_class(tasks: list[tuple[str, bytes]]) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for env_name, data in tasks:
        out.setdefault(env_name, []).append(data)
    return out


def _env_names() -> set[str]:
    import metaworld

    return set(metaworld.ALL_V3_ENVIRONMENTS)
