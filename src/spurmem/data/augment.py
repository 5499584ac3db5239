"""Augmentation on float image batches, after the decoded cache (the ``Augment`` of ``batches.py``).

Each augmentation is a callable ``aug(x, generator) -> x`` on a normalised float batch
``N x C x H x W`` on any device, vectorised over the batch and drawing all randomness from
``generator`` (a CPU generator: a few numbers per image, copied to the batch's device without waiting
for it) so a seeded run is reproducible and draws the same crops and flips on the CPU and on a GPU. ``AUGMENTATIONS`` maps names to their classes; :func:`build_augment`
looks one up by name (``"none"`` gives ``None``: no augmentation).

* ``flip``: horizontal flip with probability 1/2.
* ``flip-crop``: pad by ``padding`` px (value 0, the mean colour after normalisation), random crop
  back to the input size, then flip; the usual CIFAR recipe.
* ``rrc-flip``: random resized crop (area fraction in ``scale``, aspect ratio in ``ratio``, resized
  back to the input size with bilinear sampling), then flip; the published Waterbirds/CelebA recipe
  (scale 0.7-1.0) applied to the cached images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from spurmem.registry import lookup
from spurmem.data.batches import Augment
from spurmem.data.schema import DataError


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _flip_mask(n: int, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, generator=generator) < 0.5


@dataclass(frozen=True)
class Flip:
    """Horizontal flip of each image with probability 1/2."""

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        flip = _flip_mask(len(x), generator).to(x.device, non_blocking=True).view(-1, 1, 1, 1)
        return torch.where(flip, x.flip(-1), x)


@dataclass(frozen=True)
class FlipCrop:
    """Zero-pad by ``padding`` px, crop a random window of the input size, flip with probability 1/2."""

    padding: int = 4

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        n, c, h, w = x.shape
        p = int(self.padding)
        padded = F.pad(x, (p, p, p, p))
        top = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(x.device, non_blocking=True)
        left = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(x.device, non_blocking=True)
        rows = (top[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (left[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        channel = torch.arange(c, device=x.device)[None, :, None, None]
        return Flip()(padded[batch, channel, rows, cols], generator)


@dataclass(frozen=True)
class ResizedCropFlip:
    """Random resized crop back to the input size, then horizontal flip with probability 1/2.

    The crop covers a fraction ``scale`` of the image area with aspect ratio (log-uniform) in
    ``ratio``; sides that would exceed the image are clamped to it.
    """

    scale: tuple[float, float] = (0.7, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        n = len(x)
        area = _uniform(n, *self.scale, generator)
        log_ratio = _uniform(n, math.log(self.ratio[0]), math.log(self.ratio[1]), generator)
        width = torch.sqrt(area * log_ratio.exp()).clamp(max=1.0)  # fractions of the image side
        height = torch.sqrt(area / log_ratio.exp()).clamp(max=1.0)
        cx = (2 * torch.rand(n, generator=generator) - 1) * (1 - width)  # centre in [-1, 1] coordinates
        cy = (2 * torch.rand(n, generator=generator) - 1) * (1 - height)
        sign = torch.where(_flip_mask(n, generator), -1.0, 1.0)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = width * sign
        theta[:, 0, 2] = cx
        theta[:, 1, 1] = height
        theta[:, 1, 2] = cy
        grid = F.affine_grid(theta.to(x.device, x.dtype, non_blocking=True), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


AUGMENTATIONS: dict[str, type | None] = {
    "none": None,
    "flip": Flip,
    "flip-crop": FlipCrop,
    "rrc-flip": ResizedCropFlip,
}


def build_augment(name: str, **params: Any) -> Augment | None:
    """The augmentation registered as ``name`` with ``params`` (e.g. ``padding=2``, ``scale=(0.5, 1)``)."""
    cls = lookup(AUGMENTATIONS, name, "augmentation", error=DataError)
    if cls is None:
        if params:
            raise DataError(f"augmentation 'none' takes no parameters, got {sorted(params)}")
        return None
    try:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})
    except TypeError as exc:
        raise DataError(f"augmentation {name!r}: {exc}") from None
