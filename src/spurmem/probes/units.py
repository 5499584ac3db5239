"""Units (docs/method.md §3): one output channel of a Conv2d or one output neuron of a Linear (for a ViT, one
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


def match_layers(names: Iterable[str], patterns: Iterable[str]) -> list[str]:
    """The ``names`` (in their order) equal to or matching (``fnmatch`` glob) any of ``patterns``;
    a pattern that matches none is an error naming a few of the layers there are."""
    from fnmatch import fnmatchcase

    from spurmem.config import ConfigError

    names, patterns = list(names), list(patterns)
    unmatched = [p for p in patterns if not any(n == p or fnmatchcase(n, p) for n in names)]
    if unmatched:
        shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
        raise ConfigError(f"layers: {', '.join(map(repr, unmatched))} match(es) no candidate layer ({shown})")
    return [n for n in names if any(n == p or fnmatchcase(n, p) for p in patterns)]


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


# -- where a unit's output lives, and which weights a selection addresses ---------------------------

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def output_site(model: nn.Module, layer: str) -> str:
    """The module whose output holds the unit's *post-normalisation* activation.

    That is the BatchNorm registered right after a conv (or linear) layer when it normalises exactly
    that layer's channels (``layer1.0.conv1`` -> ``layer1.0.bn1``, ``stages.2.conv`` -> ``stages.2.bn``),
    else the layer itself (a ViT's ``mlp.fc1``, a plain Linear). Activation-space interventions hook
    this module, so "the channel's output set to 0" means 0 after BatchNorm, as docs/method.md §4 defines it.
    """
    modules = dict(model.named_modules())
    if layer not in modules:
        raise KeyError(f"model has no layer {layer!r}")
    n_units = _layer_of(layer, modules[layer]).n_units
    leaves = [name for name, m in model.named_modules() if name and not any(True for _ in m.children())]
    if layer in leaves:
        pos = leaves.index(layer)
        if pos + 1 < len(leaves):
            nxt = modules[leaves[pos + 1]]
            if isinstance(nxt, _NORMS) and nxt.num_features == n_units:
                return leaves[pos + 1]
    return layer


def unit_axis(module: nn.Module) -> int:
    """The axis of ``module``'s output that indexes units: 1 for conv and BatchNorm maps
    (N x C x ...), the last axis for Linear outputs (N x H, or N x T x H in a transformer)."""
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d) + _NORMS):
        return 1
    if isinstance(module, nn.Linear):
        return -1
    raise TypeError(f"cannot tell the unit axis of a {type(module).__name__} output")


def units_by_layer(units: Iterable[Unit]) -> dict[str, list[int]]:
    """``{layer: sorted unit indices}``, layers in first-seen order."""
    out: dict[str, list[int]] = {}
    for u in units:
        out.setdefault(u.layer, []).append(u.index)
    return {layer: sorted(set(idx)) for layer, idx in out.items()}


@dataclass
class WeightSelection:
    """Individual weights chosen by an unstructured rule (``weight-threshold``): per layer, a boolean
    mask with the shape of that layer's ``weight``. Biases are never part of such a selection."""

    masks: dict[str, torch.Tensor]

    @property
    def count(self) -> int:
        return int(sum(int(m.sum()) for m in self.masks.values()))

    def units(self) -> list[Unit]:
        """The units with at least one selected incoming weight."""
        return [
            Unit(layer, int(i))
            for layer, m in self.masks.items()
            for i in torch.nonzero(m.flatten(1).any(dim=1)).flatten().tolist()
        ]


def selection_masks(
    model: nn.Module, target: "Iterable[Unit] | WeightSelection"
) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    """Per layer, boolean masks ``(weight_mask, bias_mask)`` over the parameters a target addresses.

    A list of units addresses whole slices ``W[c]`` and ``b[c]``; a :class:`WeightSelection`
    addresses its individual weights (bias mask None). Validates layer names and indices.
    """
    out: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
    if isinstance(target, WeightSelection):
        for layer, mask in target.masks.items():
            module = get_module(model, layer)
            if tuple(mask.shape) != tuple(module.weight.shape):
                raise ValueError(
                    f"weight selection for {layer!r} has shape {tuple(mask.shape)}, "
                    f"the layer's weight has {tuple(module.weight.shape)}"
                )
            out[layer] = (mask.to(device=module.weight.device, dtype=torch.bool), None)
        return out
    for layer, indices in units_by_layer(target).items():
        for i in indices:
            weight_slice(model, Unit(layer, i))  # validates type and range with a clear message
        module = get_module(model, layer)
        wmask = torch.zeros(module.weight.shape, dtype=torch.bool, device=module.weight.device)
        wmask[indices] = True
        bmask = None
        if module.bias is not None:
            bmask = torch.zeros(module.bias.shape, dtype=torch.bool, device=module.bias.device)
            bmask[indices] = True
        out[layer] = (wmask, bmask)
    return out
