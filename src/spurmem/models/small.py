"""Small models for small images: the reference CNN of docs/method.md §9 and an MLP."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

REFERENCE_WIDTHS = (16, 32, 64, 128)


class Stage(nn.Module):
    """conv3x3 (no bias) + BatchNorm + ReLU, optionally followed by a 2x2 max-pool."""

    def __init__(self, c_in: int, c_out: int, pool: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.relu(self.bn(self.conv(x))))


class SmallCNN(nn.Module):
    """The reference CNN: stages of widths 16-32-64-128 (times ``width``), max-pool after all but the
    last, global average pool, Linear head ``fc``. Units live in ``stages.{i}.conv``."""

    head_name = "fc"

    def __init__(self, n_classes: int, in_channels: int = 3, width: float = 1.0,
                 widths: Sequence[int] | None = None) -> None:
        super().__init__()
        if widths is None:
            widths = [max(1, int(round(w * width))) for w in REFERENCE_WIDTHS]
        widths = list(widths)
        stages, c_in = [], in_channels
        for i, c_out in enumerate(widths):
            stages.append(Stage(c_in, c_out, pool=i < len(widths) - 1))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (after global pooling), as used by last-layer retraining."""
        return torch.flatten(self.pool(self.stages(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class MLP(nn.Module):
    """Flatten, then Linear + ReLU hidden layers (``layers.{i}``), then the head ``fc``."""

    head_name = "fc"

    def __init__(self, n_classes: int, in_channels: int = 3, img_size: int = 32,
                 hidden: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        layers, d_in = [], in_channels * img_size * img_size
        for d_out in hidden:
            layers.append(nn.Linear(d_in, d_out))
            d_in = d_out
        self.layers = nn.ModuleList(layers)
        self.fc = nn.Linear(d_in, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.flatten(x, 1)
        for layer in self.layers:
            h = torch.relu(layer(h))
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))
