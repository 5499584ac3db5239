"""The interface every training algorithm implements over the one shared training loop.

The loop (``spurmem.train.trainer``) owns batching, the optimiser, the schedule, evaluation,
checkpoints and resume. An algorithm only says what the loss of a batch is, and may keep state
(GroupDRO's group weights, the framework's pruning mask) that it saves for resume.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from spurmem.data.batches import Batch
from spurmem.data.schema import GroupDataset


class Algorithm:
    """Base class: plain ERM (mean cross-entropy)."""

    name = "erm"
    uses_group_labels = False

    def __init__(self, dataset: GroupDataset, **hparams: Any) -> None:
        self.dataset = dataset
        self.hparams = hparams

    def setup(self, model: torch.nn.Module, device: torch.device) -> None:
        """Called once before the first epoch (and again after a resume)."""

    def on_epoch_start(self, epoch: int, model: torch.nn.Module) -> None:
        """Called at the start of every epoch (e.g. to recompute a pruning mask)."""

    def sample_weights(self) -> torch.Tensor | None:
        """Per-training-example sampling weights, or None for uniform shuffling."""
        return None

    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """The batch loss to minimise, and named terms to log (floats)."""
        logits = model(batch.x)
        loss = F.cross_entropy(logits, batch.y)
        return loss, {"ce": float(loss.detach())}

    def describe(self) -> dict[str, Any]:
        """JSON-ready facts about what the algorithm did (e.g. DFR's chosen C), stored in run.json."""
        return {}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors to checkpoint for resume."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass
