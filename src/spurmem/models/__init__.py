"""Models: the ``MODELS`` registry, :func:`build_model` and loading of foreign weight files.

Every model maps a normalised float image batch ``N x C x H x W`` to ``N x n_classes`` logits and
declares its classifier head's module name in ``model.head_name``.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

from torch import nn

from spurmem.config import ConfigError, nearest_key
from spurmem.models.small import MLP, SmallCNN
from spurmem.models.torchvision_models import build_mobilenet_v2, build_resnet18, build_resnet50
from spurmem.models.vit import build_vit
from spurmem.models.weights import (
    WeightsReport, load_weights, pretrained_mobilenet_v2_available, pretrained_mobilenet_v2_path, read_state_dict,
)


def _small_cnn(n_classes: int, in_channels: int = 3, img_size: int = 32, **params: Any) -> nn.Module:
    return SmallCNN(n_classes, in_channels, **params)


# Each builder takes (n_classes, in_channels, img_size, **params).
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
    try:
        return MODELS[name](n_classes, in_channels=in_channels, img_size=img_size, **params)
    except TypeError as exc:
        raise ConfigError(f"model {name!r}: bad model_params {params}: {exc}") from None


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "MLP", "MODELS", "SmallCNN", "WeightsReport", "build_model", "count_parameters", "load_weights",
    "pretrained_mobilenet_v2_available", "pretrained_mobilenet_v2_path", "read_state_dict",
]
