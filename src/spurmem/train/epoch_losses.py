"""The epoch's training loss and logged terms, read from the device in batches of steps.

Reading a CUDA loss on the host (``float(loss)``) waits for the GPU to finish the step, so Python
cannot queue the next one meanwhile. :class:`EpochLosses` keeps each step's loss and tensor-valued
terms on the device and reads the pending steps in one transfer every ``check_every`` steps and at
the end of the epoch; the sums are then formed on the host in float64, step by step, exactly as a
per-step read forms them (the same numbers on the CPU, where ``check_every`` is 1). A non-finite
loss is reported with the step it happened at, also when it is read a few steps later: nothing of
the epoch has been saved by then.
"""

from __future__ import annotations

import math
from typing import Any

import torch

CUDA_CHECK_EVERY = 25  # steps between reads on CUDA: progress and the non-finite check lag by at most this


def check_interval(device: torch.device) -> int:
    """Steps between reads: every step on the CPU (reading is free there), CUDA_CHECK_EVERY on CUDA."""
    return CUDA_CHECK_EVERY if device.type == "cuda" else 1


class EpochLosses:
    """Sums of ``loss * n``, ``loss`` and every term ``* n`` over an epoch's steps, read lazily."""

    def __init__(self, check_every: int = 1) -> None:
        self.check_every = max(1, int(check_every))
        self.loss_sum = self.batch_loss_sum = 0.0
        self.n_seen = 0
        self.terms: dict[str, float] = {}
        self._pending: list[tuple[int, int, torch.Tensor, dict[str, Any]]] = []

    def add(self, step: int, loss: torch.Tensor, n: int, terms: dict[str, Any]) -> tuple[int, float] | None:
        """Record step ``step`` (``n`` examples); when a read is due, read and return the first
        non-finite step as ``(step, loss)`` (None when every read loss is finite or none was read)."""
        self._pending.append((step, n, loss.detach(), terms))
        return self.read() if len(self._pending) >= self.check_every else None

    @property
    def unread(self) -> int:
        """Steps recorded but not read yet."""
        return len(self._pending)

    @property
    def mean(self) -> float:
        """The mean loss per example over the steps read so far."""
        return self.loss_sum / max(self.n_seen, 1)

    def read(self) -> tuple[int, float] | None:
        """Read the pending steps (one transfer) into the sums; the first non-finite one as (step, loss)."""
        if not self._pending:
            return None
        device = self._pending[0][2].device
        tensors = [t for _, _, loss, terms in self._pending
                   for t in (loss, *(v for v in terms.values() if isinstance(v, torch.Tensor)))]
        values = iter(torch.stack([t.detach().reshape(()).to(device, torch.float64, non_blocking=True)
                                   for t in tensors]).tolist())
        pending, self._pending = self._pending, []
        for step, n, _, terms in pending:
            value = next(values)
            if not math.isfinite(value):
                return step, value
            self.loss_sum, self.batch_loss_sum, self.n_seen = self.loss_sum + value * n, self.batch_loss_sum + value, self.n_seen + n
            for k, v in terms.items():
                v = next(values) if isinstance(v, torch.Tensor) else float(v)
                self.terms[k] = self.terms.get(k, 0.0) + v * n
        return None

    def term_means(self) -> dict[str, float]:
        return {k: v / max(self.n_seen, 1) for k, v in self.terms.items()}
