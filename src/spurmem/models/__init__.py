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
from spurmem.registry import unknown_name
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
    check_model_params(name, params)
    try:
        return MODELS[name](n_classes, in_channels=in_channels, img_size=img_size, **params)
    except TypeError as exc:
        bad = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
        if bad:  # an open-ended builder (timm) refused it
            raise ConfigError(f"model {name!r}: model_params: unknown key {bad.group(1)!r} (refused by the "
                              f"model's builder)") from None
        raise ConfigError(f"model {name!r}: bad model_params {params}: {exc}") from None


BUILDER_ARGUMENTS = ("arch", "n_classes", "in_channels", "img_size")  # set by build_model, not model_params


def check_model_params(name: str, params: dict[str, Any]) -> None:
    """ConfigError naming the first key of ``params`` that model ``name`` does not take, and the nearest one
    (models whose builder passes unknown keywords on, the timm ViTs, accept any key here)."""
    accepted = model_parameters(name)
    unknown = [] if accepted is None else [k for k in params if k not in accepted]
    if unknown:
        raise ConfigError(f"model {name!r}: model_params: {unknown_name('key', unknown[0], accepted)}")


def model_parameters(name: str) -> dict[str, Any] | None:
    """The ``model_params`` that model ``name`` takes and their defaults, or None when its builder passes
    unknown keywords on (the timm ViTs), so that any key may be valid."""
    if name not in MODELS:
        near = nearest_key(name, MODELS)
        raise ConfigError(f"unknown model {name!r}" + (f"; did you mean {near!r}?" if near else "")
                          + f" Known: {', '.join(MODELS)}")
    params = inspect.signature(MODELS[name]).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return {k: p.default for k, p in params.items() if k not in BUILDER_ARGUMENTS}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "MLP", "MODELS", "SmallCNN", "WeightsReport", "build_model", "check_model_params", "count_parameters", "load_weights",
    "model_parameters", "pretrained_mobilenet_v2_available", "pretrained_mobilenet_v2_path", "read_state_dict",
]
