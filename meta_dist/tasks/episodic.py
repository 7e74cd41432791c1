"""N-way K-shot classification episodes drawn from a task store (Omniglot, mini-ImageNet, CIFAR-FS, or
any prepared image folder: `task.name: images` reads whatever store it is given, the dataset names
also check that the store holds that dataset).

A spec names `ways` distinct classes of a split (with `within_alphabet`, all of one alphabet, as in Lake
et al.'s one-shot benchmark) and, per class, `shots + num_query` distinct rows
(class-major: a class's shots, then its queries) and the class's rotation; it is drawn only from
(seed, split, step, index), so the driver and every worker agree on it. The store is opened lazily
on first use, so each worker process memory-maps its own copy (and a pickled family carries no
file handles). `materialize` gathers a whole chunk's rows in one read, rotates each way's images,
scales to [0, 1] and normalizes with the store's train-split channel statistics.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from meta_dist.config import TaskConfig
from meta_dist.errors import UserError
from meta_dist.tasks.spec import TaskBatch, TaskFamily, TaskSpec, derive_seed, spec_rng
from meta_dist.tasks import remote
from meta_dist.tasks.store import TaskStore, open_store

log = logging.getLogger("meta_dist")


class EpisodicTasks(TaskFamily):
    metric = "accuracy"
    alphabet_episodes = True

    def __init__(self, cfg: TaskConfig, data_dir: str | None):
        self.cfg = cfg
        self.name = cfg.name
        # Absolute: Ray workers that receive the user's code run in its unpacked copy, not here.
        self.data_dir = (data_dir if remote.is_remote(data_dir) else str(Path(data_dir).resolve())) if data_dir else ""
        self._store: TaskStore | None = None
        self._split_classes: dict[str, list[int]] = {}
        self._split_alphabets: dict[str, dict[str, list[int]]] = {}

    def __getstate__(self):
        return {"cfg": self.cfg, "name": self.name, "data_dir": self.data_dir, "_store": None, "_split_classes": {},
                "_split_alphabets": {}}

    @property
    def store(self) -> TaskStore:
        if self._store is None:
            if not self.data_dir:
                kind = "folder" if self.name == "images" else self.name
                raise UserError(f"task '{self.name}' needs a task store: pass --data DIR (built with "
                                f"`meta-dist data prepare {kind} --source PATH --out DIR`)")
            store = open_store(self.data_dir)
            if self.name != "images" and store.dataset != self.name:
                raise UserError(f"task store '{self.data_dir}' holds {store.dataset}, but the config's task.name "
                                f"is {self.name}; pass a {self.name} store with --data or set task.name={store.dataset}")
            if self.name == "omniglot" and store.manifest["split"] != self.cfg.split:
                log.warning("task store %s uses the %s class split, the config names %s (task.split); "
                            "results are reported for the store's split", self.data_dir,
                            store.manifest["split"], self.cfg.split)
            self._store = store
        return self._store

    def classes_of(self, split: str) -> list[int]:
        if split not in self._split_classes:
            ids = self.store.split_classes(split, rotations=self.cfg.augment_rotations)
            self._split_classes[split] = [int(i) for i in ids]
        return self._split_classes[split]

    def alphabets_of(self, split: str) -> dict[str, list[int]]:
        """The split's classes grouped by alphabet, each group in `classes_of` order."""
        if split not in self._split_alphabets:
            alphabet = self.store.class_alphabets()
            groups: dict[str, list[int]] = {}
            for c in self.classes_of(split):
                groups.setdefault(str(alphabet[c]), []).append(c)
            if "" in groups:
                raise UserError(f"task store '{self.data_dir}' records no alphabet for its classes, so it has no "
                                f"within-alphabet episodes; use an Omniglot store or turn within_alphabet off")
            self._split_alphabets[split] = groups
        return self._split_alphabets[split]

    def draw_classes(self, rng, split: str, n: int, within_alphabet: bool) -> list[int]:
        """`n` distinct classes of `split`; within an alphabet, one picked uniformly among those with `n`."""
        if not within_alphabet:
            pool = self.classes_of(split)
            if n > len(pool):
                raise UserError(f"{n}-way episodes need {n} classes, but the '{split}' split of {self.data_dir} "
                                f"has {len(pool)}; lower task.ways (or --ways)")
            return rng.sample(pool, n)
        groups = self.alphabets_of(split)
        eligible = sorted(a for a, members in groups.items() if len(members) >= n)
        if not eligible:
            largest = max((len(m) for m in groups.values()), default=0)
            raise UserError(f"within-alphabet {n}-way episodes need an alphabet with {n} classes, but the largest "
                            f"in the '{split}' split of {self.data_dir} has {largest}; lower the ways")
        return rng.sample(groups[rng.choice(eligible)], n)

    # -- specs (driver side) ------------------------------------------------------------------------
    def spec(self, seed, split, step, index, *, ways=None, shots=None, num_query=None,
             within_alphabet=None) -> TaskSpec:
        """`within_alphabet` None follows task.within_alphabet (training); evaluation passes its own."""
        n = ways or self.cfg.ways
        k = shots or self.cfg.shots
        q = num_query or self.cfg.num_query
        rng = spec_rng(seed, split, step, index)
        store = self.store
        within = self.cfg.within_alphabet if within_alphabet is None else within_alphabet
        classes = self.draw_classes(rng, split, n, within)
        rows: list[int] = []
        for c in classes:
            available = int(store.num_rows[c])
            if k + q > available:
                raise UserError(f"{k} shots + {q} queries per class need {k + q} images, but class "
                                f"'{store.class_keys[c]}' has {available}; lower task.shots or task.num_query")
            first = int(store.first_row[c])
            rows.extend(first + r for r in rng.sample(range(available), k + q))
        rotations = tuple(int(store.rotation[c]) for c in classes)
        return TaskSpec(self.name, split, step, index, derive_seed("episode", seed, split, step, index),
                        params=(float(k), float(q)), classes=tuple(classes), rows=tuple(rows), rotations=rotations)

    # -- tensors (worker side) ----------------------------------------------------------------------
    def materialize(self, specs: Sequence[TaskSpec], device="cpu") -> TaskBatch:
        k, q = (int(v) for v in specs[0].params)
        n = len(specs[0].classes)
        if any(s.params != specs[0].params or len(s.classes) != n for s in specs):
            raise AssertionError("a chunk's specs must share ways, shots and num_query")
        store = self.store
        pixels = store.pixels(np.fromiter((r for s in specs for r in s.rows), dtype=np.int64))
        x = torch.from_numpy(pixels).permute(0, 3, 1, 2)  # [T*n*(k+q), C, H, W] uint8
        c, h, w = store.image_shape
        x = x.reshape(len(specs), n, k + q, c, h, w)
        turns = torch.tensor([s.rotations for s in specs])
        if turns.any():
            x = x.clone()
            for t, way in turns.nonzero().tolist():
                x[t, way] = torch.rot90(x[t, way], int(turns[t, way]), dims=(-2, -1))
        x = self.normalize(x)
        labels = torch.arange(n).view(1, n, 1)
        sy = labels.expand(len(specs), n, k).reshape(len(specs), n * k)
        qy = labels.expand(len(specs), n, q).reshape(len(specs), n * q)
        sx = x[:, :, :k].reshape(len(specs), n * k, c, h, w)
        qx = x[:, :, k:].reshape(len(specs), n * q, c, h, w)
        return TaskBatch(sx.contiguous(), sy.contiguous(), qx.contiguous(), qy.contiguous()).to(device)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 images [..., C, H, W] -> the network's inputs: scaled to [0, 1], then normalized with
        the store's train-split channel statistics."""
        c = self.store.image_shape[0]
        mean = torch.tensor(self.store.manifest["mean"]).view(c, 1, 1)
        std = torch.tensor(self.store.manifest["std"]).view(c, 1, 1)
        return (pixels.float().div_(255.0) - mean) / std

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.store.image_shape

    @property
    def output_dim(self) -> int:
        return self.cfg.ways
