"""Models: the ``MODELS`` registry, :func:`build_model` and loading of foreign weight files.

Every model maps a normalised float image batch ``N x C x H x W`` to ``N x n_classes`` logits and
declares its classifier head's module name in ``model.head_name``.
"""

from __future__ import annotations

import inspect
import re
from functools import partial
from typing import Any, Callable

from torch import nn

from spurmem.config import ConfigError, nearest_key
from spurmem.models.small import MLP, SmallCNN
from spurmem.models.torchvision_models import build_mobilenet_v2, build_resnet18, build_resnet50
from spurmem.models.vit import build_vit
from spurmem.registry import lookup, unknown_name
from spurmem.models.weights import (
    WeightsReport, load_weights, pretrained_mobilenet_v2_available, pretrained_mobilenet_v2_path, read_state_dict,
)


def _small_cnn(n_classes: int, in_channels: int = 3, img_size: int = 32, width: float = 1.0,
               widths: list[int] | None = None) -> nn.Module:
    return SmallCNN(n_classes, in_channels, width=width, widths=widths)


# Each builder takes (n_classes, in_channels, img_size, **params).
BUILDER_ARGUMENTS = ("n_classes", "in_channels", "img_size")
MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "small-cnn": _small_cnn,
    "resnet18": build_resnet18,
    "resnet50": build_resnet50,
    "mobilenet_v2": build_mobilenet_v2,
    "vit_tiny": partial(build_vit, "vit_tiny"),
    "deit_tiny": partial(build_vit, "deit_tiny"),
    "deit_small": partial(build_vit, "deit_small"),
}


def build_model(name: str, n_classes: int, in_channels: int = 3, img_size: int = 32, **params: Any) -> nn.Module:
    """A freshly initialised model from the registry (seed the global RNG first for reproducibility)."""
    if name not in MODELS:
        near = nearest_key(name, MODELS)
        hint = f"; did you mean {near!r}?" if near else ""
        raise ConfigError(f"unknown model {name!r}{hint} Known: {', '.join(MODELS)}")
    accepted, open_ended = model_parameters(name)
    for key in params:
        if key not in accepted and not open_ended:
            raise ConfigError(f"model {name!r}: model_params: {unknown_name('key', key, accepted)}")
    try:
        return MODELS[name](n_classes, in_channels=in_channels, img_size=img_size, **params)
    except TypeError as exc:
        bad = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
        if bad:  # an open-ended builder (timm) refused it
            raise ConfigError(f"model {name!r}: model_params: {unknown_name('key', bad.group(1), accepted)}") from None
        raise ConfigError(f"model {name!r}: bad model_params {params}: {exc}") from None


def model_parameters(name: str) -> tuple[list[str], bool]:
    """The ``model_params`` keys model ``name`` names, and whether it passes other keys on (timm's ViTs)."""
    signature = inspect.signature(lookup(MODELS, name, "model", error=ConfigError))
    named = [k for k, p in signature.parameters.items()
             if k not in BUILDER_ARGUMENTS and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return named, any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "MLP", "MODELS", "SmallCNN", "WeightsReport", "build_model", "count_parameters", "load_weights", "model_parameters",
    "pretrained_mobilenet_v2_available", "pretrained_mobilenet_v2_path", "read_state_dict",
]
