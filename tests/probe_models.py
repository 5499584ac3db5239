"""Tiny hand-built models for the probe tests (importable helper, not a test module)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class TinyCNN(nn.Module):
    """Same module names as the zoo's ``small-cnn``: ``stages.{i}.conv``/``stages.{i}.bn``, head ``fc``."""

    def __init__(self, widths=(4, 8), in_channels=3, n_classes=2):
        super().__init__()
        stages, c = [], in_channels
        for i, w in enumerate(widths):
            stages.append(
                nn.Sequential(OrderedDict(
                    conv=nn.Conv2d(c, w, 3, padding=1, bias=False), bn=nn.BatchNorm2d(w), relu=nn.ReLU(),
                    pool=nn.MaxPool2d(2) if i < len(widths) - 1 else nn.Identity(),
                ))
            )
            c = w
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, n_classes)

    def forward(self, x):
        return self.fc(self.pool(self.stages(x)).flatten(1))


class MLP(nn.Module):
    def __init__(self, d_in=6, hidden=(5, 4), n_classes=2):
        super().__init__()
        layers, d = [], d_in
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU()]
            d = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(d, n_classes)

    def forward(self, x):
        return self.head(self.body(x.flatten(1)))


def train_briefly(model: nn.Module, dataset, epochs: int = 15, lr: float = 1e-2, seed: int = 0) -> nn.Module:
    """A few epochs of Adam on the training split (tests only: the real loop is ``spurmem.train``)."""
    from spurmem.data import iterate_batches

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for b in iterate_batches(dataset["train"], 64, dataset.mean, dataset.std, shuffle=True, generator=g):
            opt.zero_grad()
            nn.functional.cross_entropy(model(b.x), b.y).backward()
            opt.step()
    opt.zero_grad(set_to_none=True)
    model.eval()
    return model
