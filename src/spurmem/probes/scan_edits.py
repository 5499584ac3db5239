"""The edits of single units as the scan engine applies them: the weight rows (or activation values)
each unit gets from :func:`~spurmem.probes.interventions.intervene` when edited alone, and the output
channels those rows produce. Shared by the exact engine (:mod:`~spurmem.probes.scan`) and the
screened scan (:mod:`~spurmem.probes.scan_screen`)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from spurmem.probes.interventions import intervene
from spurmem.probes.units import Unit, get_module


@torch.no_grad()
def edited_rows(model: nn.Module, units: list[Unit], name: str, params: dict[str, Any]):
    """The weight rows (and bias entries) each unit gets from ``intervene`` when edited alone."""
    module = get_module(model, units[0].layer)
    rows, biases = [], []
    for u in units:
        with intervene(model, [u], name, inplace=True, **params):
            rows.append(module.weight[u.index].clone())
            if module.bias is not None:
                biases.append(module.bias[u.index].clone())
    return torch.stack(rows), (torch.stack(biases) if biases else None)


def activation_values(units: list[Unit], name: str, params: dict[str, Any]) -> list[float | torch.Tensor]:
    if name == "zero-activation":
        return [0.0] * len(units)
    means = params.get("means")
    if means is None:
        raise ValueError("intervention 'mean-activation' needs means= (see activation_means)")
    layer = units[0].layer
    if layer not in means:
        raise KeyError(f"means has no entry for layer {layer!r}; compute them with activation_means")
    values = torch.as_tensor(means[layer], dtype=torch.float32)
    return [values[u.index] for u in units]


def unit_outputs(module: nn.Module, x: torch.Tensor, rows: torch.Tensor, bias: torch.Tensor | None,
                  channels: list[int]) -> torch.Tensor:
    """The output channels of ``module`` that the edited rows produce, one per row, on input ``x``."""
    if isinstance(module, nn.Linear):
        return F.linear(x, rows, bias)
    if isinstance(module, nn.Conv2d):
        if module.groups == 1:
            return module._conv_forward(x, rows, bias)
        per_group = module.in_channels // module.groups
        outs = []
        for j, c in enumerate(channels):
            g = c // (module.out_channels // module.groups)
            part = x[:, g * per_group:(g + 1) * per_group]
            if module.padding_mode != "zeros":
                raise NotImplementedError("grouped convs with non-zero padding are not supported by the scan engine")
            outs.append(F.conv2d(part, rows[j:j + 1], None if bias is None else bias[j:j + 1], module.stride,
                                 module.padding, module.dilation))
        return torch.cat(outs, dim=1)
    raise TypeError(f"the scan engine edits Conv2d and Linear layers, not {type(module).__name__}")


__all__ = ["activation_values", "edited_rows", "unit_outputs"]
