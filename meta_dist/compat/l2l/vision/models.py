"""learn2learn's Omniglot networks, as meta-dist's own: `OmniglotCNN` is Conv4, `OmniglotFC` is MLP.

Both are subclasses of the meta-dist networks (`meta_dist.models.conv4.Conv4` and
`meta_dist.models.mlp.MLP`), so they train through meta-dist's vectorized algorithms exactly as the
built-in `conv4_strided` and `mlp` models do, and a script that builds them needs no change. They
keep learn2learn's constructor arguments and input conventions, not its layer names or
initialization: a learn2learn state dict does not load into them (nor the reverse).
"""
from __future__ import annotations

import torch
from torch import nn

from meta_dist.models.conv4 import Conv4
from meta_dist.models.mlp import MLP

OMNIGLOT_SHAPE = (1, 28, 28)
FC_SIZES = (256, 128, 64, 64)


class OmniglotCNN(Conv4):
    """MAML's Omniglot convnet (Finn et al. 2017): meta-dist's strided Conv4 on 1x28x28 inputs.

    `layers` blocks of [3x3 convolution with stride 2 and padding 1, batch norm, ReLU] with
    `hidden_size` channels (28 -> 14 -> 7 -> 4 -> 2 with the default 4), a spatial mean, then a
    linear layer to `output_size` logits. Inputs are viewed as [-1, 1, 28, 28], so flat [N, 784]
    rows work too, as in learn2learn.

    Where it differs from learn2learn's OmniglotCNN:

    * names: the convolutions are `convs.<i>`, the batch norms `norms.<i>` and the classifier
      `head` (learn2learn: `features` and `classifier`); there is no separate `features` module;
    * batch norm always normalizes with the current batch's statistics and keeps no running
      averages, in eval mode too (meta-dist's rule for every network, so forwards are pure functions
      of parameters and inputs); `forward(x, stats_rows=n)` normalizes with the first n rows only,
      which meta-dist's evaluation uses for support-statistics (non-transductive) testing. In the
      classic training loop, whose network stays in train mode, both use batch statistics;
    * initialization is PyTorch's default, as for meta-dist's Conv4, not learn2learn's own scheme.
    """

    def __init__(self, output_size: int = 5, hidden_size: int = 64, layers: int = 4):
        if layers < 1:
            raise ValueError(f"OmniglotCNN needs at least one layer, got layers={layers}")
        super().__init__(OMNIGLOT_SHAPE, channels=hidden_size, out_features=output_size, strided=True)
        self.hidden_size = hidden_size
        self._set_depth(layers)

    def _set_depth(self, layers: int) -> None:
        """Conv4 builds four blocks; drop or add stride-2 blocks to get `layers` of them."""
        while len(self.convs) > layers:
            del self.convs[-1]
            del self.norms[-1]
        while len(self.convs) < layers:
            self.convs.append(nn.Conv2d(self.hidden_size, self.hidden_size, 3, stride=2, padding=1))
            self.norms.append(nn.BatchNorm2d(self.hidden_size, track_running_stats=False))

    def forward(self, x: torch.Tensor, stats_rows: int | None = None) -> torch.Tensor:
        return super().forward(x.reshape(-1, *OMNIGLOT_SHAPE), stats_rows)


class OmniglotFC(MLP):
    """A fully connected classifier on flattened images: meta-dist's MLP with ReLU activations.

    `input_size` features (28 ** 2 for Omniglot; inputs are flattened from dimension 1, so
    [N, 1, 28, 28] images work), hidden layers of `sizes` units (default 256, 128, 64, 64, as
    learn2learn's), then a linear layer to `output_size` logits.

    Where it differs from learn2learn's OmniglotFC:

    * no batch norm: learn2learn's hidden layers are [linear, batch norm, ReLU], meta-dist's MLP
      has [linear, ReLU] only;
    * names: the layers are `net.<i>` of one Sequential (learn2learn: `features` and `classifier`);
    * initialization is PyTorch's default for nn.Linear.
    """

    def __init__(self, input_size: int, output_size: int, sizes=None):
        sizes = FC_SIZES if sizes is None else tuple(int(s) for s in sizes)
        super().__init__(input_size, sizes, output_size, activation="relu")
        self.input_size = input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.reshape(x.shape[0], -1))

    def forward_tasks(self, stacked: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """MLP's batched kernel over tasks, on inputs [T, N, ...] flattened to [T, N, input_size]."""
        return super().forward_tasks(stacked, x.reshape(x.shape[0], x.shape[1], -1))


__all__ = ["OmniglotCNN", "OmniglotFC"]
