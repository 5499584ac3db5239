"""Penultimate features: the input of the classifier head, captured by a forward pre-hook."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from torch import nn

from spurmem.data.batches import iterate_batches
from spurmem.data.schema import GroupDataset
from spurmem.probes.units import get_module, head_name


@contextmanager
def capture_head_input(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Within the block, every forward pass appends the head's input (flattened to B x D) to the
    yielded list; the hook also fires for ``functional_call`` passes, and keeps the autograd graph."""
    captured: list[torch.Tensor] = []
    head = get_module(model, head_name(model))
    handle = head.register_forward_pre_hook(lambda _m, args: captured.append(args[0].flatten(1)))
    try:
        yield captured
    finally:
        handle.remove()


@torch.no_grad()
def extract_features(
    model: nn.Module, dataset: GroupDataset, split: str, batch_size: int = 512, device: torch.device | None = None
) -> np.ndarray:
    """Penultimate features of every example of ``split`` in dataset order (model in eval mode)."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    chunks = []
    try:
        with capture_head_input(model) as captured:
            for batch in iterate_batches(dataset[split], batch_size, dataset.mean, dataset.std):
                model(batch.x.to(device))
                chunks.append(captured.pop().float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(chunks).numpy()
