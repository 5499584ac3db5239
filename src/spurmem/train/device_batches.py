"""The training loop's input path: batches on the model's device, ready to use.

* **CPU**: :func:`~spurmem.data.batches.iterate_batches` as it always was: float conversion,
  normalisation and augmentation on the CPU (in the prefetch thread when ``workers > 0``).
* **CUDA**: the uint8 images are gathered on the CPU (``as_uint8=True``), copied into page-locked
  memory (``pin_memory``, in the prefetch thread when ``workers > 0``), moved with
  ``non_blocking=True`` (an asynchronous copy of a quarter of the float32 bytes), then converted,
  normalised and augmented on the GPU (``data/augment.py`` works on a batch on any device). Nothing
  here waits for the GPU.

Both paths draw the same random numbers from the same generator in the same order (the
permutation first, then each batch's augmentation), so the seeded batch sequence does not depend on
the device: on the GPU the images agree with the CPU ones up to float rounding (the conversion is
exact; bilinear crops differ by float32 rounding only: tests/test_device_batches.py).
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch

from spurmem.data.batches import Augment, Batch, iterate_batches, normalisation, shard_augment_generator, to_float
from spurmem.data.schema import SplitData


def device_batches(
    split: SplitData,
    batch_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device,
    *,
    generator: torch.Generator,
    shuffle: bool = True,
    sample_weights: torch.Tensor | None = None,
    augment: Augment | None = None,
    drop_last: bool = False,
    workers: int = 0,
    channels_last: bool = False,
    convert_on_device: bool | None = None,
    shard: tuple[int, int] | None = None,
) -> Iterator[Batch]:
    """Training batches of ``split`` on ``device`` (see the module docstring for the two paths).

    ``convert_on_device``: move uint8 and convert/augment after the move (default: on CUDA only);
    batches are pinned on CUDA. ``shard=(rank, world_size)``: this rank's share of every batch
    (data-parallel training; :func:`~spurmem.data.batches.iterate_batches`), augmented on the device with
    the same per-batch generator the CPU path uses.
    """
    on_device = device.type == "cuda" if convert_on_device is None else convert_on_device
    batches: Iterator[Batch] = iterate_batches(
        split, batch_size, mean, std, shuffle=shuffle, generator=generator, sample_weights=sample_weights,
        augment=None if on_device else augment, drop_last=drop_last, as_uint8=on_device, shard=shard,
    )
    if device.type == "cuda":
        batches = (b.pin_memory() for b in batches)
    if workers > 0:
        from spurmem.train.prefetch import prefetch

        batches = prefetch(batches, depth=2 * workers)
    constants = tuple(t.to(device, non_blocking=True) for t in normalisation(mean, std)) if on_device else None
    for batch in batches:
        batch = batch.to(device, non_blocking=True)
        if on_device:
            batch.x = to_float(batch.x, mean, std, constants)
            if augment is not None:  # the permutation was drawn before the first batch: this order is fixed
                gen = generator if shard is None else shard_augment_generator(generator, shard[0])
                batch.x = augment(batch.x, gen)
        if channels_last:
            batch.x = batch.x.contiguous(memory_format=torch.channels_last)
        yield batch
