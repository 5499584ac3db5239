"""A planted model whose memorising units are known by construction (shared by the localisation and
memorisation tests)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from spurmem.data import iterate_batches

MINORITY = 2  # y=1 on a=0 (red crosses)


class Planted(nn.Module):
    """Flatten -> ``templates`` (Linear, ReLU) -> ``memory`` (Linear, ReLU) -> ``fc``.

    ``templates`` units 0/1 detect the colour (the spurious rule: blue -> y=1, red -> y=0) and
    ``memory`` units 0/1 pass them on. Every further ``templates`` unit matches one specific minority
    training image (a template with a threshold above every other image of every split), and every
    further ``memory`` unit is a *memorising unit*: it fires only on its handful of training images
    (the sum of their templates) and votes for their true class."""

    head_name = "fc"

    def __init__(self, dim: int, n_templates: int, n_memorisers: int) -> None:
        super().__init__()
        self.templates = nn.Linear(dim, 2 + n_templates)
        self.memory = nn.Linear(2 + n_templates, 2 + n_memorisers)
        self.fc = nn.Linear(2 + n_memorisers, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.memory(torch.relu(self.templates(torch.flatten(x, 1))))))


def _flat(dataset, split):
    return torch.cat([b.x.flatten(1) for b in iterate_batches(dataset[split], 1000, dataset.mean, dataset.std)])


def planted_model(dataset, memorise: bool = True, per_unit: int = 5) -> tuple[Planted, list[np.ndarray]]:
    x_train = _flat(dataset, "train")
    others = torch.cat([_flat(dataset, s) for s in dataset.splits])  # the train split comes first
    a = dataset["train"].a
    g = dataset["train"].group.numpy()
    blue, red = x_train[a == 1].mean(0), x_train[a == 0].mean(0)
    w = (blue - red) / (blue - red).norm()
    b = -float(w @ (blue + red) / 2)
    minority = np.flatnonzero(g == MINORITY) if memorise else np.array([], dtype=int)
    chunks = [minority[i:i + per_unit] for i in range(0, len(minority), per_unit)]
    model = Planted(x_train.shape[1], len(minority), len(chunks))
    mu = x_train.mean(0)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.templates.weight[0], model.templates.bias[0] = w, b
        model.templates.weight[1], model.templates.bias[1] = -w, -b
        model.memory.weight[0, 0] = model.memory.weight[1, 1] = 1.0
        model.fc.weight[1, 0] = model.fc.weight[0, 1] = 1.0
        for t, i in enumerate(minority):
            template = (x_train[i] - mu) / (x_train[i] - mu).norm()
            scores = (others - mu) @ template
            inside, outside = float(scores[i]), float(torch.cat([scores[:i], scores[i + 1:]]).max())
            assert inside > outside, "a template must separate its example from every other image"
            threshold = (inside + outside) / 2
            scale = 1.0 / (inside - threshold)  # its example gives exactly 1, every other image 0
            model.templates.weight[2 + t] = scale * template
            model.templates.bias[2 + t] = -scale * (float(template @ mu) + threshold)
        red_margin = torch.relu(x_train[minority] @ -w - b).max() if memorise else 0.0
        for j, chunk in enumerate(chunks):
            for i in chunk:
                model.memory.weight[2 + j, 2 + int(np.flatnonzero(minority == i)[0])] = 1.0
            model.fc.weight[1, 2 + j] = 2.0 * float(red_margin) + 1.0
    return model.eval(), chunks
