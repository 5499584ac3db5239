"""The framework that removes spurious memorisation (docs/method.md §6), as an algorithm over the shared loop.

Per batch: a dense branch ``z_d = f_theta(x)`` and a masked branch ``z_p = f_{theta*M}(x)`` that share
the weights, and

    L = NTXent(stopgrad(z_d), z_p) + NTXent(z_d, stopgrad(z_p)) + lambda * CE(z_d, y).

The two NT-Xent terms have the same value, and the first sends gradient only through ``z_p``, the
second only through ``z_d``; their sum therefore has the gradient of one NT-Xent with *no* stopgrad.
So one backward through ``nt + nt.detach()`` gives exactly the published gradients from two forward
passes (the published code uses three; ``tests/test_framework.py`` checks the equality). The mask M
is recomputed from the current weights at the start of every epoch. Group labels are not used.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import ConfigDict, Field

from spurmem.data.batches import Batch
from spurmem.data.schema import GroupDataset
from spurmem.train.algorithm import Algorithm
from spurmem.train.algorithms.contrastive import nt_xent
from spurmem.train.algorithms.features import capture_head_input
from spurmem.train.algorithms.masked_pass import MaskedPass
from spurmem.train.algorithms.masking import Mask, compute_mask, load_unit_ids, mask_summary
from spurmem.train.algorithms.params import AlgorithmParams, parse_params


class FrameworkParams(AlgorithmParams):
    """Options of the framework; the defaults are the published ones except ``ce`` (see docs/method.md §6)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    target: Literal["smallest", "largest", "critical"] = "smallest"
    granularity: Literal["weight", "unit"] = "weight"
    fraction: float = Field(0.01, gt=0.0, lt=1.0, description="share of the maskable set masked")
    critical_units: list[str] | str | None = Field(
        None, description="unit ids, a comma-separated string of ids, or a probe result file (target=critical)"
    )
    critical_k: int | None = Field(None, ge=1, description="use only the first k critical units (a ranked table)")
    tau: float = Field(0.5, gt=0.0, description="NT-Xent temperature")
    lam: float = Field(0.2, ge=0.0, alias="lambda", description="weight of the cross-entropy term")
    contrast_on: Literal["probabilities", "logits", "features"] = "probabilities"
    ce: Literal["logits", "double-softmax"] = Field(
        "logits", description="'double-softmax' reproduces the published code's CE on softmax outputs"
    )
    masked_bn_stats: Literal["discard", "update"] = Field(
        "discard", description="whether the masked pass may update BatchNorm running statistics"
    )


class SpurMemFramework(Algorithm):
    """Dense and masked branches with a contrastive loss between them plus weighted cross-entropy."""

    name = "spurmem"
    group_labels = "none"
    labels_note = "training class labels (the loss uses no group labels)"
    Params = FrameworkParams
    share_stem = True  # reuse the dense first block's unaffected channels in the masked pass (same gradients)

    def __init__(self, dataset: GroupDataset, **hparams: Any) -> None:
        super().__init__(dataset, **hparams)
        self.params = parse_params(FrameworkParams, hparams, self.name)
        self.critical_units = (
            load_unit_ids(self.params.critical_units) if self.params.critical_units is not None else None
        )
        if self.critical_units is not None and self.params.critical_k is not None:
            self.critical_units = self.critical_units[: self.params.critical_k]
        if self.params.target == "critical" and not self.critical_units:
            from spurmem.config import ConfigError

            raise ConfigError("algorithm 'spurmem': target=critical needs algorithm_params.critical_units")
        self.mask: Mask | None = None
        self._pass: MaskedPass | None = None

    def setup(self, model: torch.nn.Module, device: torch.device) -> None:
        self.update_mask(model)

    def on_epoch_start(self, epoch: int, model: torch.nn.Module) -> None:
        self.update_mask(model)

    def update_mask(self, model: torch.nn.Module) -> None:
        p = self.params
        self.mask = compute_mask(model, p.target, p.granularity, p.fraction, self.critical_units)

    def representation(self, logits: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        on = self.params.contrast_on
        if on == "probabilities":
            return torch.softmax(logits, dim=1)
        if on == "logits":
            return logits
        assert features is not None
        return features

    def masked_pass(self, model: torch.nn.Module) -> MaskedPass:
        """The masked forward for the current mask and model, built once per mask."""
        plan = self._pass
        if plan is None or plan.mask is not self.mask or plan.model is not model:
            keep = self.params.masked_bn_stats == "update"
            plan = self._pass = MaskedPass(model, self.mask, keep, share_stem=self.share_stem)
        return plan

    def branches(self, model: torch.nn.Module, x: torch.Tensor):
        """Dense and masked logits, and their penultimate features when the contrast needs them."""
        if self.mask is None:
            self.update_mask(model)
        assert self.mask is not None
        masked = self.masked_pass(model)
        if self.params.contrast_on != "features":
            with masked.capture() as stem:
                z_d = model(x)
            return z_d, masked(x, stem.output(x) if stem is not None else None), None, None
        with capture_head_input(model) as captured:
            with masked.capture() as stem:
                z_d = model(x)
            z_p = masked(x, stem.output(x) if stem is not None else None)
        return z_d, z_p, captured[0], captured[1]

    def cross_entropy(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.params.ce == "double-softmax":
            return F.cross_entropy(torch.softmax(logits, dim=1), y)
        return F.cross_entropy(logits, y)

    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        z_d, z_p, f_d, f_p = self.branches(model, batch.x)
        nt = nt_xent(self.representation(z_d, f_d), self.representation(z_p, f_p), self.params.tau)
        ce = self.cross_entropy(z_d, batch.y)
        # value: 2 NT + lambda CE (the two stop-gradient terms); gradient: that of NT(z_d, z_p) + lambda CE
        loss = nt + nt.detach() + self.params.lam * ce
        with torch.no_grad():  # tensors: the loop reads them with the loss, every few steps (no sync per step)
            terms = torch.stack([nt.detach(), ce.detach(), F.cross_entropy(z_p, batch.y),
                                 (z_d.argmax(1) != z_p.argmax(1)).float().mean()]).unbind()
        return loss, dict(zip(("ntxent", "ce", "masked_ce", "disagreement"), terms))

    def describe(self) -> dict[str, Any]:
        """The options and the size of the last mask, for run.json."""
        return {"params": self.params.model_dump(by_alias=True), "last_mask": mask_summary(self.mask or {}),
                "critical_units": self.critical_units}
