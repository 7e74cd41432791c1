"""Meta-Dataset's episodes (Triantafillou et al. 2020) over one or several image task stores.

`task.episodes: meta_dataset` replaces fixed N-way K-shot episodes with the paper's distribution. Each
episode first picks a source (a store) by `task.sources`' weights, then:

- ways N uniform in [MIN_WAYS, min(task.max_ways, classes in the split)];
- queries per class q = min(MAX_QUERY, min over the chosen classes of floor(images / 2));
- a support budget |S| = min(MAX_SUPPORT, sum over classes of ceil(beta * min(MAX_SHOTS, images - q))),
  beta uniform in (0, 1];
- shots of class c: k_c = min(floor(R_c * (|S| - N)) + 1, images_c - q), with R_c proportional to
  exp(alpha_c) * images_c, alpha_c uniform in [log 0.5, log 2]: class-imbalanced support sets whose size
  follows each class's image count, every class with at least one shot.

Every draw comes from the spec's own random stream, so an episode is a function of (seed, split, step,
index) like any other. Episodes differ in shape, so a chunk holds one episode (`runtime.chunk_size: 1`)
and evaluation scores them one at a time; the evaluation reports accuracy per source (`per_task`).
Evaluation may still fix the shape (`eval.ways`, `eval.shots`, `eval.query_per_class`).
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Sequence

import numpy as np
import torch

from meta_dist.config import TaskConfig
from meta_dist.errors import UserError
from meta_dist.tasks.episodic import EpisodicTasks
from meta_dist.tasks.spec import TaskBatch, TaskFamily, TaskSpec, derive_seed, spec_rng

MIN_WAYS, MAX_QUERY, MAX_SUPPORT, MAX_SHOTS = 5, 10, 500, 100


class MetaDatasetEpisodes(TaskFamily):
    metric = "accuracy"
    variable_shapes = True
    """Episodes of one chunk may differ in ways and shots: evaluation scores them one by one."""

    def __init__(self, cfg: TaskConfig, data_dir: str | None):
        self.cfg = cfg
        self.name = cfg.name
        store_cfg = replace(cfg, name="images")  # a source may hold any dataset
        sources = cfg.sources or ({"store": data_dir} if data_dir else {})
        if not sources:
            raise UserError("task.episodes meta_dataset needs task stores: pass --data DIR, or name several in "
                            "task.sources as {NAME: PATH} or {NAME: {path: PATH, weight: W}}")
        self.sources: dict[str, EpisodicTasks] = {}
        self.weights: list[float] = []
        for name, entry in sorted(sources.items()):
            path, weight = (entry.get("path"), entry.get("weight", 1.0)) if isinstance(entry, dict) else (entry, 1.0)
            if not isinstance(path, str) or not path or not isinstance(weight, (int, float)) or weight <= 0:
                raise UserError(f"task.sources.{name} must be a store path or {{path: PATH, weight: W > 0}}, "
                                f"got {entry!r}")
            self.sources[str(name)] = EpisodicTasks(store_cfg, path)
            self.weights.append(float(weight))

    # -- specs (driver side) ------------------------------------------------------------------------
    def spec(self, seed, split, step, index, *, ways=None, shots=None, num_query=None) -> TaskSpec:
        rng = spec_rng(seed, split, step, index)
        name = rng.choices(list(self.sources), weights=self.weights)[0]
        source = self.sources[name]
        pool = source.classes_of(split)
        top = min(self.cfg.max_ways, len(pool))
        if (ways or MIN_WAYS) > len(pool):
            raise UserError(f"source '{name}' has {len(pool)} classes in its '{split}' split, fewer than the "
                            f"{ways or MIN_WAYS} ways of an episode; drop it from task.sources for this split")
        n = ways or rng.randint(MIN_WAYS, top)
        classes = rng.sample(pool, n)
        images = [int(source.store.num_rows[c]) for c in classes]
        q = num_query or min(MAX_QUERY, min(i // 2 for i in images))
        if q < 1 or any(i - q < 1 for i in images):
            raise UserError(f"source '{name}' has a class with {min(images)} images; Meta-Dataset episodes need at "
                            f"least 2 per class (one shot, one query)")
        k = [min(shots, i - q) for i in images] if shots else support_shots(rng, images, q)
        rows = []
        for c, i, kc in zip(classes, images, k):
            first = int(source.store.first_row[c])
            rows.extend(first + r for r in rng.sample(range(i), kc + q))
        rotations = tuple(int(source.store.rotation[c]) for c in classes)
        return TaskSpec(self.name, split, step, index, derive_seed("episode", seed, split, step, index),
                        params=(name, float(q), *map(float, k)), classes=tuple(classes), rows=tuple(rows),
                        rotations=rotations)

    def task_group(self, spec: TaskSpec) -> str:
        """The source an episode came from: evaluation reports accuracy per source."""
        return spec.params[0]

    # -- tensors (worker side) ----------------------------------------------------------------------
    def materialize(self, specs: Sequence[TaskSpec], device="cpu") -> TaskBatch:
        if len(specs) != 1:
            raise AssertionError("Meta-Dataset episodes differ in shape: materialize them one at a time")
        s = specs[0]
        source = self.sources[s.params[0]]
        q, shots = int(s.params[1]), [int(k) for k in s.params[2:]]
        x = torch.from_numpy(source.store.pixels(np.asarray(s.rows, dtype=np.int64))).permute(0, 3, 1, 2)
        support, query, sy, qy, at = [], [], [], [], 0
        for way, (k, turns) in enumerate(zip(shots, s.rotations)):
            block = x[at: at + k + q]
            at += k + q
            if turns:
                block = torch.rot90(block, turns, dims=(-2, -1))
            support.append(block[:k])
            query.append(block[k:])
            sy += [way] * k
            qy += [way] * q
        batch = TaskBatch(source.normalize(torch.cat(support))[None], torch.tensor([sy]),
                          source.normalize(torch.cat(query))[None], torch.tensor([qy]))
        return batch.to(device)

    @property
    def input_shape(self) -> tuple[int, ...]:
        shapes = {name: s.store.image_shape for name, s in self.sources.items()}
        if len(set(shapes.values())) > 1:
            raise UserError(f"task.sources hold images of different shapes ({shapes}); one network needs one "
                            f"input shape: prepare the stores at one size (data prepare folder --image-size N)")
        return next(iter(shapes.values()))

    @property
    def output_dim(self) -> int:
        return self.cfg.max_ways


def support_shots(rng, images: list[int], q: int) -> list[int]:
    """Meta-Dataset's class-imbalanced shots for classes of `images` images each, `q` of them queries."""
    beta = 1.0 - rng.random()  # (0, 1]
    budget = min(MAX_SUPPORT, sum(math.ceil(beta * min(MAX_SHOTS, i - q)) for i in images))
    weights = [math.exp(rng.uniform(math.log(0.5), math.log(2.0))) * i for i in images]
    total = sum(weights)
    n = len(images)
    return [min(math.floor(w / total * (budget - n)) + 1, i - q) for w, i in zip(weights, images)]
