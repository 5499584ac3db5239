"""The interface every training algorithm implements over the one shared training loop.

The loop (``spurmem.train.trainer``) owns batching, the optimiser, the schedule, evaluation,
checkpoints and resume. An algorithm only says what the loss of a batch is, and may keep state
(GroupDRO's group weights, the framework's pruning mask) that it saves for resume.

Every algorithm also declares which group labels it uses (``group_labels``): ``none``, ``validation``
(the validation split's group labels, e.g. DFR's balanced refit) or ``training`` (the training
split's, e.g. GroupDRO). Model selection is separate: the selection rule (``val_wga`` reads the
validation group labels) is the same for every algorithm of a comparison and recorded beside it.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F

from spurmem.data.batches import Batch
from spurmem.data.schema import GroupDataset


GroupLabels = Literal["none", "validation", "training"]
GROUP_LABELS: tuple[str, ...] = ("none", "validation", "training")


def selection_group_labels(rule: str) -> GroupLabels:
    """Which group labels a selection rule reads: ``val_wga`` the validation split's, the others none."""
    return "validation" if rule == "val_wga" else "none"


class Algorithm:
    """Base class: plain ERM (mean cross-entropy)."""

    name = "erm"
    group_labels: GroupLabels = "none"
    labels_note = "training class labels"  # one line: what the algorithm uses, for run.json and the docs
    trains = True  # False: all the work is in setup (a head refit of an init_from run), run with epochs=0
    # Under data-parallel training (spurmem.train.distributed): "mean" when ``loss`` is a mean over the batch's
    # examples (the trainer weights each rank's by its share of the global batch); "share" when ``loss`` already
    # returns this rank's share of the global-batch loss (it all-reduces what it needs, as GroupDRO does).
    loss_over_ranks: Literal["mean", "share"] = "mean"

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

    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float | torch.Tensor]]:
        """The batch loss to minimise, and named terms to log: floats or detached 0-dim tensors (the loop
        reads tensors every few steps in one transfer; ``float(t)`` here would wait for the GPU every step)."""
        logits = model(batch.x)
        loss = F.cross_entropy(logits, batch.y)
        return loss, {"ce": loss.detach()}

    def describe(self) -> dict[str, Any]:
        """JSON-ready facts about what the algorithm did (e.g. DFR's chosen C), stored in run.json."""
        return {}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors to checkpoint for resume."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass
