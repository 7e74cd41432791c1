"""A user's own task family and network, as they would sit in a plain folder next to a config.

The tests copy this file into a temporary folder (nothing installed, not importable from elsewhere)
and name it by import path: `task.name: "my_tasks:Blobs"`, `model.name: "my_tasks:bn_net"`.
"""
import torch
from torch import nn

import meta_dist


class Blobs(meta_dist.TaskFamily):
    """N-way classification of 2-D Gaussian blobs; each task draws its own class centres."""

    name = "blobs"
    metric = "accuracy"

    def __init__(self, ways=3, shots=5, num_query=5, spread=0.5, fail_at_step=0):
        self.ways, self.shots, self.num_query, self.spread = ways, shots, num_query, spread
        self.fail_at_step = fail_at_step  # > 0: materialize raises at that training step (error tests)

    def spec(self, seed, split, step, index, *, ways=None, shots=None, num_query=None):
        rng = meta_dist.spec_rng(seed, split, step, index)
        n, k, q = ways or self.ways, shots or self.shots, num_query or self.num_query
        centres = tuple(rng.uniform(-3, 3) for _ in range(2 * n))
        return meta_dist.TaskSpec(self.name, split, step, index, rng.getrandbits(62), params=(n, k, q) + centres)

    def materialize(self, specs, device="cpu"):
        if self.fail_at_step and specs[0].split == "train" and specs[0].step == self.fail_at_step:
            raise ValueError(f"boom from my_tasks at step {self.fail_at_step}")
        xs, ys = [], []
        for s in specs:
            n, k, q = (int(v) for v in s.params[:3])
            centres = torch.tensor(s.params[3:], dtype=torch.float32).view(n, 2)
            g = torch.Generator().manual_seed(s.seed)
            y = torch.arange(n).repeat_interleave(k + q).view(n, k + q)
            xs.append(centres[y] + self.spread * torch.randn(n, k + q, 2, generator=g))
            ys.append(y)
        x, y = torch.stack(xs), torch.stack(ys)
        k = int(specs[0].params[1])

        def flat(t):
            return t.reshape(len(specs), -1, *t.shape[3:])
        return meta_dist.TaskBatch(flat(x[:, :, :k]), flat(y[:, :, :k]), flat(x[:, :, k:]),
                                   flat(y[:, :, k:])).to(device)

    @property
    def input_shape(self):
        return (2,)

    @property
    def output_dim(self):
        return self.ways


class Unseeded(Blobs):
    """Wrong on purpose: draws its tasks from the global random state."""

    def spec(self, seed, split, step, index, **shape):
        import random

        return meta_dist.TaskSpec(self.name, split, step, index, random.getrandbits(62), params=(3, 5, 5) + (0.0,) * 6)


def bn_net(input_shape, output_dim, hidden=32, p_drop=0.1):
    """BatchNorm that keeps running statistics (torch's default) and dropout."""
    return nn.Sequential(nn.Linear(input_shape[0], hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                         nn.Dropout(p_drop), nn.Linear(hidden, output_dim))


def wrong_width(input_shape, output_dim):
    return nn.Linear(input_shape[0], output_dim + 1)


NOT_A_FAMILY = 42
