"""What a unit scan measures and how it is summed: :class:`ScanResult` (per-variant, per-group
sums over one split, with the derived accuracies, drops and margins) and :class:`Accumulator`, which
the exact engine (:mod:`spurmem.probes.scan`) and the screened scan (:mod:`spurmem.probes.scan_screen`)
fill, chunk by chunk or pair by pair."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from spurmem.probes.scan_screen import ScreenReport
from spurmem.probes.scan_tune import LayerScan

# -- results -------------------------------------------------------------------------------------

@dataclass
class ScanResult:
    """Per-variant (a unit, or a set of units) and per-group sums over one split.

    ``correct``, ``margin_sum`` and ``loss_sum`` are ``[variants x groups]``; the ``base_*`` arrays
    are the unmodified model (with ``base_units`` applied, if any). ``example_correct`` is
    ``[variants x examples]`` (examples in ``example_index`` order) when asked for; ``pred_count``
    ``[variants x groups x classes]`` counts the predicted classes. A screened scan (``engine ==
    "fx-screened"``, see ``screen``) counts the pairs its screen cleared with their clean
    prediction, and their margins and losses are its first-order estimates. ``layer_scans`` says,
    per layer of an exact scan, the stacked rows it used, why, and what its parts cost.
    """

    split: str
    intervention: str
    params: dict[str, Any]
    labels: list[str]
    layers: list[str]
    group_names: list[str]
    count: np.ndarray
    correct: np.ndarray
    margin_sum: np.ndarray
    loss_sum: np.ndarray
    base_correct: np.ndarray
    base_margin_sum: np.ndarray
    base_loss_sum: np.ndarray
    base_units: list[str] = field(default_factory=list)
    example_index: np.ndarray | None = None
    example_correct: np.ndarray | None = None
    base_example_correct: np.ndarray | None = None
    pred_count: np.ndarray | None = None
    base_pred_count: np.ndarray | None = None
    seconds: float = 0.0
    engine: str = "fx"
    screen: ScreenReport | None = None
    layer_scans: dict[str, LayerScan] = field(default_factory=dict)

    @property
    def plain_layers(self) -> list[str]:
        """Layers whose variants ran as plain per-unit passes (stacking was slower there)."""
        return [layer for layer, info in self.layer_scans.items() if info.plain]

    def _per_count(self, a: np.ndarray) -> np.ndarray:
        return np.divide(a, self.count, out=np.full(np.shape(a), np.nan, dtype=float), where=self.count > 0)

    @property
    def accuracy(self) -> np.ndarray:
        return self._per_count(self.correct)

    @property
    def base_accuracy(self) -> np.ndarray:
        return self._per_count(self.base_correct)

    @property
    def drop(self) -> np.ndarray:
        """Accuracy before minus after, per variant and group (positive = the edit hurts)."""
        return self.base_accuracy[None, :] - self.accuracy

    @property
    def mean_margin(self) -> np.ndarray:
        return self._per_count(self.margin_sum)

    @property
    def base_mean_margin(self) -> np.ndarray:
        return self._per_count(self.base_margin_sum)

    def table(self) -> pd.DataFrame:
        """Tidy: one row per variant x group."""
        acc, base_acc = self.accuracy, self.base_accuracy
        margin, base_margin = self.mean_margin, self.base_mean_margin
        rows = []
        for i, label in enumerate(self.labels):
            for g, name in enumerate(self.group_names):
                rows.append({
                    "unit": label, "layer": self.layers[i], "split": self.split, "group": g, "group_name": name,
                    "intervention": self.intervention, "correct": int(self.correct[i, g]),
                    "count": int(self.count[g]), "acc_before": base_acc[g], "acc_after": acc[i, g],
                    "delta": base_acc[g] - acc[i, g], "margin_before": base_margin[g],
                    "margin_after": margin[i, g], "loss_after": self._per_count(self.loss_sum[i])[g],
                })
        return pd.DataFrame(rows)


class Accumulator:
    """Per-variant, per-group sums of correct predictions, logit margins and losses."""

    def __init__(self, n_variants: int, n_groups: int, n_examples: int, n_classes: int) -> None:
        self.correct = np.zeros((n_variants, n_groups), dtype=np.int64)
        self.pred = np.zeros((n_variants, n_groups, n_classes), dtype=np.int64)
        self.margin = np.zeros((n_variants, n_groups))
        self.loss = np.zeros((n_variants, n_groups))
        self.examples = np.zeros((n_variants, n_examples), dtype=bool) if n_examples else None
        self.n_groups = n_groups

    def add(self, row: int, logits: torch.Tensor, batch, offset: int) -> None:
        self.add_rows([row], logits, batch, offset)

    def add_rows(self, rows: list[int], logits: torch.Tensor, batch, offset: int | np.ndarray,
                 mask: torch.Tensor | None = None) -> None:
        """``logits`` is ``[len(rows) x B x C]`` for the examples at ``offset, offset + 1, ...`` (or at
        the positions ``offset`` lists); with ``mask`` (``[len(rows) x B]`` bool) only the pairs it
        marks are counted."""
        logits = logits.float().cpu()
        k, b, c = logits.shape
        pred, correct, margin, loss = _outcomes(logits, batch.y.unsqueeze(0).expand(k, b))
        weight = torch.ones(k, b, dtype=torch.float64) if mask is None else mask.cpu().double()
        onehot = F.one_hot(batch.g, self.n_groups).double()
        self.correct[rows] += ((correct.double() * weight) @ onehot).round().long().numpy()
        self.margin[rows] += ((margin.double() * weight) @ onehot).numpy()
        self.loss[rows] += ((loss.double() * weight) @ onehot).numpy()
        cells = self.n_groups * c  # variant x group x class cell of each prediction:
        cell = torch.arange(k).unsqueeze(1) * cells + batch.g.unsqueeze(0) * c + pred
        counts = np.bincount(cell.reshape(-1).numpy(), weights=weight.reshape(-1).numpy(), minlength=k * cells)
        self.pred[rows] += counts.round().astype(np.int64).reshape(k, self.n_groups, c)
        if self.examples is not None:
            cols = np.arange(offset, offset + b) if np.isscalar(offset) else np.asarray(offset)
            where = (np.asarray(rows)[:, None], cols[None, :])
            block = self.examples[where]
            keep = weight.numpy() > 0
            block[keep] = correct.numpy()[keep]
            self.examples[where] = block

    def add_pairs(self, rows: np.ndarray, logits: torch.Tensor, y: torch.Tensor, g: torch.Tensor,
                  examples: np.ndarray) -> torch.Tensor:
        """One (variant ``rows[r]``, example ``examples[r]``) pair per row of ``logits`` ``[R x C]``;
        returns the predicted classes."""
        pred, correct, margin, loss = _outcomes(logits.float().cpu(), y.cpu())
        correct = correct.numpy()
        gi = g.cpu().numpy()
        np.add.at(self.correct, (rows, gi), correct.astype(np.int64))
        np.add.at(self.margin, (rows, gi), margin.double().numpy())
        np.add.at(self.loss, (rows, gi), loss.double().numpy())
        np.add.at(self.pred, (rows, gi, pred.numpy()), 1)
        if self.examples is not None:
            self.examples[rows, examples] = correct
        return pred


def _outcomes(logits: torch.Tensor, y: torch.Tensor):
    """Per prediction (``logits`` ``[... x C]``, labels ``y`` ``[...]``): predicted class, whether it
    is right, the margin (true logit minus the best other) and the cross-entropy loss."""
    true = logits.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    other = logits.scatter(-1, y.unsqueeze(-1), float("-inf")).amax(dim=-1)
    pred = logits.argmax(dim=-1)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none").reshape(y.shape)
    return pred, pred == y, true - other, loss


__all__ = ["Accumulator", "ScanResult"]
