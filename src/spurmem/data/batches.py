"""Fast batch iteration over a :class:`SplitData` held as uint8 tensors on the CPU.

Batches are gathered by indexing the uint8 array, then converted to float and normalised; the
training loop moves them to the device. Augmentation, when given, runs on the float batch.
``as_uint8=True`` yields the gathered uint8 images instead, for conversion and augmentation on the
device (``spurmem.train.device_batches``): a quarter of the bytes over the bus.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch

from spurmem.data.schema import SplitData

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass
class Batch:
    """One mini-batch: normalised float images, labels, attributes, groups and dataset indices."""

    x: torch.Tensor
    y: torch.Tensor
    a: torch.Tensor
    g: torch.Tensor
    index: torch.Tensor

    def _tensors(self) -> tuple[torch.Tensor, ...]:
        return self.x, self.y, self.a, self.g, self.index

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        return Batch(*(t.to(device, non_blocking=non_blocking) for t in self._tensors()))

    def pin_memory(self) -> "Batch":
        """A copy in page-locked memory, so that ``to(cuda, non_blocking=True)`` is an asynchronous copy."""
        return Batch(*(t.pin_memory() for t in self._tensors()))


def normalisation(mean: Sequence[float], std: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)``, float32 1 x C x 1 x 1, with ``x * scale - shift == (x / 255 - mean) / std``
    (computed in float64, rounded once)."""
    m = torch.tensor(mean, dtype=torch.float64).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float64).view(1, -1, 1, 1)
    return (1.0 / (255.0 * s)).float(), (m / s).float()


def to_float(
    images: torch.Tensor, mean: Sequence[float], std: Sequence[float],
    constants: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """uint8 N x C x H x W -> normalised float32, ``(x / 255 - mean) / std`` (one multiply, one subtract, in place),
    on the images' device. ``constants``: :func:`normalisation` already on that device (no copy per batch)."""
    x = images.float()
    scale, shift = constants if constants is not None else normalisation(mean, std)
    return x.mul_(scale.to(x.device)).sub_(shift.to(x.device))


def shard_augment_generator(generator: torch.Generator, rank: int) -> torch.Generator:
    """The generator one rank of a data-parallel job augments a batch with: seeded by one draw of
    ``generator``, made alike on every rank (so ``generator`` stays in step), plus the rank."""
    seed = int(torch.randint(2**62, (1,), generator=generator))
    return torch.Generator().manual_seed(seed + rank)


def iterate_batches(
    split: SplitData,
    batch_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    sample_weights: torch.Tensor | None = None,
    augment: Augment | None = None,
    indices: torch.Tensor | None = None,
    drop_last: bool = False,
    shard: tuple[int, int] | None = None,
    as_uint8: bool = False,
) -> Iterator[Batch]:
    """Yield batches of ``split`` (optionally restricted to ``indices``).

    ``sample_weights`` draws ``len`` examples with replacement in proportion to the weights
    (group-balanced resampling); ``shuffle`` permutes. Both use ``generator`` so runs are reproducible.

    ``shard=(rank, world_size)`` (data-parallel training) yields only this rank's contiguous share of every
    batch of the full order, which every rank draws alike from the same ``generator``. Augmentation then
    draws from a generator seeded per batch and rank by one draw of ``generator``, so that ``generator``
    stays the same on every rank (and the augmentation differs from a single process's).

    ``as_uint8``: the images as stored, not converted (``augment`` must then be None: it runs later).
    """
    if as_uint8 and augment is not None:
        raise ValueError("as_uint8=True yields unconverted images: augment them after to_float")
    base = torch.arange(len(split)) if indices is None else torch.as_tensor(indices, dtype=torch.long)
    if sample_weights is not None:
        w = torch.as_tensor(sample_weights, dtype=torch.double)[base]
        order = base[torch.multinomial(w, len(base), replacement=True, generator=generator)]
    elif shuffle:
        order = base[torch.randperm(len(base), generator=generator)]
    else:
        order = base
    n = len(order)
    stop = n - (n % batch_size) if drop_last else n
    group = split.group
    for start in range(0, stop, batch_size):
        idx = order[start : start + batch_size]
        augment_generator = generator
        if shard is not None:
            rank, world_size = shard
            if augment is not None:
                augment_generator = shard_augment_generator(generator, rank)
            idx = torch.tensor_split(idx, world_size)[rank]
        x = split.images[idx]
        if as_uint8:
            yield Batch(x=x, y=split.y[idx], a=split.a[idx], g=group[idx], index=idx)
            continue
        x = to_float(x, mean, std)
        if augment is not None:
            x = augment(x, augment_generator)
        yield Batch(x=x, y=split.y[idx], a=split.a[idx], g=group[idx], index=idx)
