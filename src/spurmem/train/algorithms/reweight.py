"""Group-balanced reweighting (docs/method.md §7): resample so every group is drawn equally often, or weight the
loss of each example by the inverse of its group's training count."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from spurmem.data.batches import Batch
from spurmem.data.schema import GroupDataset
from spurmem.train.algorithm import Algorithm
from spurmem.train.algorithms.params import AlgorithmParams, parse_params


class ReweightParams(AlgorithmParams):
    mode: Literal["sample", "loss"] = Field(
        "sample", description="'sample': group-balanced resampling; 'loss': inverse-group-count loss weights"
    )


def group_balanced_weights(dataset: GroupDataset) -> torch.Tensor:
    """Per-group weight N / (G * n_g) over the groups present in training (mean example weight 1)."""
    counts = torch.as_tensor(dataset.train_group_counts, dtype=torch.double)
    present = counts > 0
    w = torch.zeros_like(counts)
    w[present] = counts.sum() / (present.sum() * counts[present])
    return w


class Reweight(Algorithm):
    """Every group gets the same total weight in expectation."""

    name = "reweight"
    group_labels = "training"
    labels_note = "training group labels (group-balanced sampling or loss weights)"
    Params = ReweightParams

    def __init__(self, dataset: GroupDataset, **hparams: Any) -> None:
        super().__init__(dataset, **hparams)
        self.params = parse_params(ReweightParams, hparams, self.name)
        self.group_weights = group_balanced_weights(dataset)
        self._device_weights: torch.Tensor | None = None

    def setup(self, model: torch.nn.Module, device: torch.device) -> None:
        self._device_weights = self.group_weights.float().to(device)

    def sample_weights(self) -> torch.Tensor | None:
        if self.params.mode != "sample":
            return None
        return self.group_weights[self.dataset["train"].group]

    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        if self.params.mode == "sample":
            return super().loss(model, batch)
        if self._device_weights is None:
            self._device_weights = self.group_weights.float().to(batch.x.device)
        losses = F.cross_entropy(model(batch.x), batch.y, reduction="none")
        w = self._device_weights[batch.g]
        loss = (w * losses).mean()  # unbiased for the group-balanced loss: the weights average 1
        return loss, {"weighted_ce": loss.detach(), "ce": losses.detach().mean()}
