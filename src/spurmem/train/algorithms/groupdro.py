"""GroupDRO (Sagawa et al. 2020; docs/method.md §7): minimise the q-weighted sum of group losses, where q is
updated by exponentiated gradient ascent on the group losses, ``q_g <- q_g exp(eta * loss_g)``,
then renormalised. The optional size adjustment adds ``C / sqrt(n_g)`` to each group's loss
(n_g its training count), favouring small groups that generalise worse.

As in the reference implementation, a group absent from a batch contributes loss 0 (plus its
adjustment) to that step's update.

Under data-parallel training the per-group loss sums and counts are summed over ranks before q is
updated, so q (and its checkpoint) is the same on every rank and equals the one-process q of the same
global batch; each rank's loss is its share of the global robust loss (``loss_over_ranks = "share"``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field

from spurmem.data.batches import Batch
from spurmem.data.schema import GroupDataset
from spurmem.train.algorithm import Algorithm
from spurmem.train.algorithms.params import AlgorithmParams, parse_params


class GroupDROParams(AlgorithmParams):
    eta: float = Field(0.01, gt=0.0, description="step size of the exponentiated-gradient update of q")
    size_adjustment: float = Field(0.0, ge=0.0, description="C in the C/sqrt(n_g) group adjustment (0: off)")


class GroupDRO(Algorithm):
    """Online worst-group risk minimisation with a weight per group."""

    name = "groupdro"
    group_labels = "training"
    labels_note = "training group labels (the q-weighted group losses)"
    Params = GroupDROParams
    loss_over_ranks = "share"

    def __init__(self, dataset: GroupDataset, **hparams: Any) -> None:
        super().__init__(dataset, **hparams)
        self.params = parse_params(GroupDROParams, hparams, self.name)
        counts = torch.as_tensor(dataset.train_group_counts, dtype=torch.float)
        self.adjustment = torch.where(
            counts > 0, self.params.size_adjustment / counts.clamp(min=1).sqrt(), torch.zeros_like(counts)
        )
        self.present = counts > 0
        self.q = self.present.float() / self.present.sum()

    def setup(self, model: torch.nn.Module, device: torch.device) -> None:
        self.q = self.q.to(device)
        self.adjustment = self.adjustment.to(device)
        self.present = self.present.to(device)

    def group_losses(self, losses: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Mean loss of each group in the batch (0 for groups absent from it)."""
        n = self.dataset.n_groups
        sums = torch.zeros(n, device=losses.device, dtype=losses.dtype).index_add(0, g, losses)
        counts = torch.bincount(g, minlength=n).to(losses.dtype)
        return sums / counts.clamp(min=1)

    def update_q(self, adjusted: torch.Tensor) -> None:
        q = self.q.to(adjusted.device) * torch.exp(self.params.eta * adjusted.detach())
        q = q * self.present.to(q.device)  # a group with no training examples keeps weight 0
        self.q = q / q.sum()

    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        from spurmem.train.distributed import current

        losses = F.cross_entropy(model(batch.x), batch.y, reduction="none")
        dp = current()
        adjustment = self.adjustment.to(losses.device)
        if not dp.active:
            adjusted = self.group_losses(losses, batch.g) + adjustment
            self.update_q(adjusted)
            robust = share = (self.q * adjusted).sum()
        else:  # q from the global batch's group losses; this rank's share of the robust loss
            n = self.dataset.n_groups
            sums = torch.zeros(n, device=losses.device, dtype=losses.dtype).index_add(0, batch.g, losses)
            counts = torch.bincount(batch.g, minlength=n).to(losses.dtype)
            total = dp.sum_tensor(torch.cat([sums.detach(), counts]))
            global_counts = total[n:].clamp(min=1)
            self.update_q(total[:n] / global_counts + adjustment)
            robust = (self.q * (total[:n] / global_counts + adjustment)).sum()
            share = (self.q * (sums / global_counts + adjustment / dp.world_size)).sum()
        terms = {"robust_loss": robust.detach(), "ce": losses.detach().mean()}
        terms.update({f"q_g{g}": v for g, v in enumerate(self.q.detach().unbind())})
        return share, terms

    def describe(self) -> dict[str, Any]:
        return {"q": [round(float(v), 6) for v in self.q.tolist()], **self.params.model_dump()}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"q": self.q.detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if "q" in state:
            self.q = state["q"].to(self.q.device).float()
