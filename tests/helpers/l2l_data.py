"""A small in-memory image dataset and a standard task pipeline for the learn2learn compatibility tests
(tests/unit/test_compat_l2l_data.py and test_compat_l2l_bridge.py)."""
import torch
from torch.utils.data import Dataset

from meta_dist.compat.l2l.data import transforms as T

WAYS, ITEMS = 10, 6


class TinyImages(Dataset):
    """10 classes x 6 random 1x8x8 images; item i has label i // 6. Counts item loads."""

    target_transform = None

    def __init__(self, with_targets: bool = False):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(WAYS * ITEMS, 1, 8, 8, generator=g)
        self.y = [i // ITEMS for i in range(WAYS * ITEMS)]
        if with_targets:
            self.targets = torch.tensor(self.y)
        self.loads = 0

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        self.loads += 1
        y = self.y[i]
        return self.x[i], y if self.target_transform is None else self.target_transform(y)


def pipeline(ds, n=5, k=2, shuffle=True):
    return [T.NWays(ds, n=n), T.KShots(ds, k=k), T.LoadData(ds), T.RemapLabels(ds, shuffle=shuffle),
            T.ConsecutiveLabels(ds)]
