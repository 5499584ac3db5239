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


class CheapStem(nn.Module):
    """A 1x1 stem (``stem``, a tiny share of the work) feeding a wide residual block through a
    ReLU with two users (the block and the skip): no channel chain, so the stem's suffix is nearly
    the whole network, as for ResNet-18's ``conv1``."""

    def __init__(self, stem=4, wide=24, n_classes=4):
        super().__init__()
        self.stem = nn.Conv2d(3, stem, 1, bias=False)
        self.bn = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.branch = nn.Sequential(
            nn.Conv2d(stem, wide, 3, padding=1, bias=False), nn.BatchNorm2d(wide), nn.ReLU(inplace=True),
            nn.Conv2d(wide, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(stem, n_classes)

    def forward(self, x):
        h = self.relu(self.bn(self.stem(x)))
        h = torch.relu(h + self.branch(h))
        return self.fc(self.pool(h).flatten(1))


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


# -- planted models: the truth is known by construction -------------------------------------------
#
# Examples are 1 x 1 x 5 "images" of binary pixels (mean 0, std 1 after /255, so x is the pixel):
#   x0 = 1 when the core feature is visible and y = 1;  x1 = 1 when it is visible and y = 0
#   x2 = a (the spurious attribute)
#   x3 = 1 on the memorised training examples of minority group 1 (y=0, a=1), x4 likewise for group 2
# A planted model is hidden = Linear(5, H) (the candidate layer), logits = head(hidden): the head
# turns a per-unit contribution c_j into logit1 - logit0 = sum_j c_j h_j + bias.


def planted_dataset(visible: float = 1.0, memorise: bool = False, seed: int = 0):
    import numpy as np

    from spurmem.data import GroupDataset, SplitData

    rng = np.random.default_rng(seed)
    splits = {}
    for split, counts in (("train", [90, 10, 10, 90]), ("val", [40] * 4), ("test", [40] * 4)):
        g = np.repeat(np.arange(4), counts)
        y, a = g // 2, g % 2
        seen = rng.random(len(g)) < visible
        x = np.zeros((len(g), 5), dtype=np.uint8)
        x[:, 0] = 255 * (seen & (y == 1))
        x[:, 1] = 255 * (seen & (y == 0))
        x[:, 2] = 255 * a
        if memorise and split == "train":
            x[:, 3] = 255 * (g == 1)
            x[:, 4] = 255 * (g == 2)
        splits[split] = SplitData(images=torch.from_numpy(x).view(-1, 1, 1, 5), y=torch.from_numpy(y),
                                  a=torch.from_numpy(a), ids=[f"{split}-{i}" for i in range(len(g))], n_attrs=2)
    return GroupDataset("planted", splits, ["neg", "pos"], ["a0", "a1"], mean=(0.0,), std=(1.0,))


class Planted(nn.Module):
    def __init__(self, rows: list[tuple[list[float], float, float]], n_filler: int = 0, head_bias: float = 0.0):
        """``rows``: per unit (incoming weights over the 5 pixels, bias, contribution to logit1 - logit0)."""
        super().__init__()
        n = len(rows) + n_filler
        self.hidden = nn.Linear(5, n)
        self.head = nn.Linear(n, 2)
        with torch.no_grad():
            self.hidden.weight.zero_()
            self.hidden.bias.zero_()
            self.head.weight.zero_()
            for j, (w, b, c) in enumerate(rows):
                self.hidden.weight[j] = torch.tensor(w)
                self.hidden.bias[j] = b
                self.head.weight[0, j], self.head.weight[1, j] = -c / 2, c / 2
            self.head.bias[:] = torch.tensor([-head_bias / 2, head_bias / 2])

    def forward(self, x):
        return self.head(self.hidden(x.flatten(1)))


def class_decision_model() -> Planted:
    """Unit 0 (largest norm) carries the class: h0 = 8 x0 in {0, 8}, d = h0 / 2 - 2 (+-0.5 from a).
    Zeroing it sends every example to class 0: class 1's minority *and* majority fall. Inert filler units
    (here and below) make k random units rarely hit the planted ones, so the random control stays quiet."""
    return Planted([([8, 0, 0, 0, 0], 0.0, 0.5), ([0, 0, 1, 0, 0], 0.0, 1.0)], n_filler=60, head_bias=-2.5)


def group_feature_model() -> Planted:
    """Unit 0 (largest norm) is the core feature, h0 = 10 (x0 - x1), d = 0.2 h0 + (2a - 1): all correct.
    At its training mean (0) predictions follow the attribute: both minority groups fail on every split."""
    return Planted([([10, -10, 0, 0, 0], 0.0, 0.2), ([0, 0, 2, 0, 0], -1.0, 1.0)], n_filler=60)


def redundant_model() -> Planted:
    """Twenty copies of the core feature share the decision (d = 0.15 sum h + (2a - 1)): no single unit matters."""
    return Planted([([1, -1, 0, 0, 0], 0.0, 0.15)] * 20 + [([0, 0, 2, 0, 0], -1.0, 1.0)])


def memorising_model() -> Planted:
    """Core visible on half the examples (d = 3 h_core + (2a - 1)); units 2 and 3 (largest norms) fire only
    on minority *training* examples (x3, x4) and push them to their label: train minority 100%, held-out
    minority about 50%. Removing them undoes the memorisation and nothing else. 200 inert filler units
    make a random pick of 2 units almost never hit them."""
    return Planted([([1, -1, 0, 0, 0], 0.0, 3.0), ([0, 0, 2, 0, 0], -1.0, 1.0),
                    ([0, 0, 0, 10, 0], 0.0, -0.4), ([0, 0, 0, 0, 10], 0.0, 0.4)], n_filler=200)


def small_stem_resnet18(seed: int = 0, n_classes: int = 2) -> nn.Module:
    """torchvision's ResNet-18 with the small-image stem (3x3 conv, no max-pool), random weights, eval mode."""
    import torchvision

    torch.manual_seed(seed)
    model = torchvision.models.resnet18(num_classes=n_classes)
    model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    return model.eval()


def boundary_dataset():
    """The planted layout, deterministic: core visible on half of every group, memorisation pixels
    x3/x4 on the minority training examples, and on a twentieth of group 1 (y=0, a=1) a *faint* core
    (x1 = 128): those sit just on the wrong side of the boundary unless memorised."""
    import numpy as np

    from spurmem.data import GroupDataset, SplitData

    splits = {}
    for split, counts in (("train", [90, 20, 20, 90]), ("val", [40] * 4), ("test", [40] * 4)):
        g = np.repeat(np.arange(4), counts)
        y, a = g // 2, g % 2
        rank = np.concatenate([np.arange(n) / n for n in counts])  # position within the group, in [0, 1)
        x = np.zeros((len(g), 5), dtype=np.uint8)
        seen = rank < 0.5
        x[:, 0] = 255 * (seen & (y == 1))
        x[:, 1] = 255 * (seen & (y == 0))
        x[(g == 1) & (rank >= 0.5) & (rank < 0.55), 1] = 128
        x[:, 2] = 255 * a
        if split == "train":
            x[:, 3] = 255 * (g == 1)
            x[:, 4] = 255 * (g == 2)
        splits[split] = SplitData(images=torch.from_numpy(x).view(-1, 1, 1, 5), y=torch.from_numpy(y),
                                  a=torch.from_numpy(a), ids=[f"{split}-{i}" for i in range(len(g))], n_attrs=2)
    return GroupDataset("boundary", splits, ["neg", "pos"], ["a0", "a1"], mean=(0.0,), std=(1.0,))


def boundary_model() -> Planted:
    """d = 3 (x0 - x1) + 2 (2a - 1) + 4 x4 + [unit 0] on :func:`boundary_dataset`. Unit 0 (largest
    norm) is h0 = 10 x3 - 3.75 with contribution -0.4, its constant part cancelled by the head bias:
    it memorises group 1's training examples *and* holds the boundary in place. Zeroing it drops
    group 1's train accuracy 100% -> 55%, lifts its held-out accuracy 50% -> 55% (the faint ones
    cross) and takes group 2's held-out accuracy 50% -> 0% (the boundary moved toward class 0)."""
    return Planted([([0, 0, 0, 10, 0], -3.75, -0.4), ([1, -1, 0, 0, 0], 0.0, 3.0), ([0, 0, 2, 0, 0], -1.0, 2.0),
                    ([0, 0, 0, 0, 8], 0.0, 0.5)], n_filler=200, head_bias=-1.5)


def one_group_memoriser() -> Planted:
    """:func:`memorising_model` with group 2's memorising unit the largest (norm 12, same output):
    zeroing it alone undoes group 2's memorised training examples and changes nothing else."""
    return Planted([([1, -1, 0, 0, 0], 0.0, 3.0), ([0, 0, 2, 0, 0], -1.0, 1.0),
                    ([0, 0, 0, 10, 0], 0.0, -0.4), ([0, 0, 0, 0, 12], 0.0, 0.4 * 10 / 12)], n_filler=200)
