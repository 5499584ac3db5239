"""Helpers shared by the generated datasets: group counts at correlation rho, and channel statistics."""

from __future__ import annotations

import torch


def split_counts(n: int, rho: float) -> list[int]:
    """Counts of groups (y=0,a=0), (0,1), (1,0), (1,1) for ``n`` examples, balanced classes and
    P(a == y) = rho. With rho = 0.5 the split is group-balanced."""
    per_class = [n // 2, n - n // 2]
    counts = []
    for y, m in enumerate(per_class):
        agree = int(round(m * rho))
        counts += [agree, m - agree] if y == 0 else [m - agree, agree]
    return counts


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 N x C x H x W images scaled to [0, 1]."""
    x = images.float().div(255.0)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(mean.tolist()), tuple(std.tolist())
