"""Per-unit activation statistics at each unit's output site (after BatchNorm when there is one).

Used by the ``mean-activation`` intervention (means over the training set) and the ``activation``
scorer (mean absolute activation on one group's examples). One forward pass over the examples,
with a forward hook per site reducing everything but the unit axis.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from spurmem.data.batches import iterate_batches
from spurmem.data.schema import GroupDataset
from spurmem.device import resolve_device
from spurmem.probes.units import get_module, output_site, unit_axis

STATS = ("mean", "mean-abs")


@torch.no_grad()
def layer_activation_stats(
    model: nn.Module,
    dataset: GroupDataset,
    layers: Iterable[str],
    split: str = "train",
    stat: str = "mean",
    indices: torch.Tensor | None = None,
    batch_size: int = 512,
    device: str | torch.device = "auto",
) -> dict[str, torch.Tensor]:
    """``{layer: per-unit statistic}`` (float32, CPU) of the units' post-normalisation outputs.

    ``stat`` is ``mean`` or ``mean-abs``; the average runs over examples and, for conv maps, over
    spatial positions (for a transformer MLP, over tokens). The model runs in eval mode and its
    train/eval mode is restored. ``indices`` restricts the split to some examples.
    """
    if stat not in STATS:
        raise ValueError(f"unknown activation statistic {stat!r}; expected one of {STATS}")
    layers = list(dict.fromkeys(layers))
    dev = resolve_device(device)
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    handles = []

    def make_hook(layer: str, axis: int):
        def hook(_module, _inputs, out):
            t = out.detach().double()
            if stat == "mean-abs":
                t = t.abs()
            t = t.movedim(axis, -1).reshape(-1, t.shape[axis])
            sums[layer] = sums.get(layer, 0) + t.sum(dim=0)
            counts[layer] = counts.get(layer, 0) + t.shape[0]

        return hook

    for layer in layers:
        site = get_module(model, output_site(model, layer))
        handles.append(site.register_forward_hook(make_hook(layer, unit_axis(site))))
    was_training = model.training
    model.eval()
    try:
        for batch in iterate_batches(dataset[split], batch_size, dataset.mean, dataset.std, indices=indices):
            model(batch.x.to(dev))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    if not counts:
        raise ValueError(f"no examples to measure activations on (split {split!r})")
    return {layer: (sums[layer] / counts[layer]).float().cpu() for layer in layers}
