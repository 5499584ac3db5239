"""Units (SPEC 3): one output channel of a Conv2d or one output neuron of a Linear (for a ViT, one
hidden neuron of a block's MLP, i.e. a row of ``fc1``), with stable ids such as ``layer3.1.conv2:17``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn


@dataclass(frozen=True, order=True)
class Unit:
    """A unit addressed by its layer's module name and its output index."""

    layer: str
    index: int

    @property
    def id(self) -> str:
        return f"{self.layer}:{self.index}"

    @classmethod
    def parse(cls, unit_id: str) -> "Unit":
        layer, sep, index = unit_id.rpartition(":")
        if not sep or not layer or not index.isdigit():
            raise ValueError(f"unit id {unit_id!r} is not of the form 'layer.name:INDEX'")
        return cls(layer, int(index))

    def __str__(self) -> str:
        return self.id


@dataclass(frozen=True)
class Layer:
    """A candidate layer: its module name, kind (``conv``, ``linear`` or ``vit-mlp``) and unit count."""

    name: str
    kind: str
    n_units: int


def head_name(model: nn.Module) -> str:
    """The classifier head: ``model.head_name`` when a model declares it, else the last Linear."""
    declared = getattr(model, "head_name", None)
    if declared:
        return declared
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    if last is None:
        raise ValueError("model has no nn.Linear to serve as its classifier head")
    return last


def _is_vit(model: nn.Module) -> bool:
    return any(name.endswith("mlp.fc1") for name, _ in model.named_modules())


def candidate_layers(
    model: nn.Module,
    include_downsample: bool = False,
    include_head: bool = False,
    layers: Iterable[str] | None = None,
) -> list[Layer]:
    """Candidate layers by the default rule: every Conv2d and Linear except the head (downsample
    convs only by option); for a ViT, the MLP ``fc1`` of each block. ``layers`` names them explicitly."""
    head = head_name(model)
    modules = dict(model.named_modules())
    if layers is not None:
        out = []
        for name in layers:
            if name not in modules:
                raise KeyError(f"model has no layer {name!r}")
            out.append(_layer_of(name, modules[name]))
        return out
    vit = _is_vit(model)
    out = []
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            continue
        if name == head and not include_head:
            continue
        if "downsample" in name and not include_downsample:
            continue
        if vit and not (name.endswith("mlp.fc1") or (include_head and name == head)):
            continue
        out.append(_layer_of(name, module, vit and name.endswith("mlp.fc1")))
    return out


def _layer_of(name: str, module: nn.Module, vit_mlp: bool = False) -> Layer:
    if isinstance(module, nn.Conv2d):
        return Layer(name, "conv", module.out_channels)
    if isinstance(module, nn.Linear):
        return Layer(name, "vit-mlp" if vit_mlp else "linear", module.out_features)
    raise TypeError(f"layer {name!r} is a {type(module).__name__}; units live in Conv2d or Linear layers")


def enumerate_units(model: nn.Module, **rule) -> list[Unit]:
    """Every candidate unit, in module order then index order."""
    return [Unit(layer.name, i) for layer in candidate_layers(model, **rule) for i in range(layer.n_units)]


def get_module(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError as exc:
        raise KeyError(f"model has no layer {name!r}") from exc


def weight_slice(model: nn.Module, unit: Unit) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Views of the unit's incoming weights ``W[c]`` and its bias ``b[c]`` (None when there is no bias).

    Writing into the views edits the model in place.
    """
    module = get_module(model, unit.layer)
    if not isinstance(module, (nn.Conv2d, nn.Linear)):
        raise TypeError(f"unit {unit.id}: layer is a {type(module).__name__}, not Conv2d or Linear")
    n = module.weight.shape[0]
    if not 0 <= unit.index < n:
        raise IndexError(f"unit {unit.id}: index out of range, layer has {n} units")
    w = module.weight.data[unit.index]
    b = module.bias.data[unit.index : unit.index + 1] if module.bias is not None else None
    return w, b
