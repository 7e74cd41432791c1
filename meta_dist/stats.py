"""Summary statistics shared by every reported figure: the mean and its 95% confidence half-width."""
from __future__ import annotations

import math

import torch


def mean_ci95(values) -> tuple[float, float, int, int]:
    """(mean, 95% CI half-width 1.96 s / sqrt(n), finite count, non-finite count) of per-task values (a
    tensor or an array). Non-finite values (a diverged fine-tune) are counted, never averaged in."""
    values = torch.as_tensor(values)
    finite = values[torch.isfinite(values)].double()
    n = int(finite.numel())
    if n == 0:
        return float("nan"), float("nan"), 0, int(values.numel())
    std = float(finite.std(unbiased=True)) if n > 1 else 0.0
    return float(finite.mean()), 1.96 * std / math.sqrt(n), n, int(values.numel()) - n
