"""NeuronTune (Zheng, Ye and Zhang, ICML 2025): suppress the penultimate units that separate an ERM
model's errors from its correct predictions, then retrain the last layer. No group labels.

On an identification split (validation by default) the head's input features are taken from the
fixed backbone and the current head predicts. Per class c and unit u, with the class's misclassified
(E) and correctly classified (R) examples,

    score[c, u] = (stat(f_u | E) - stat(f_u | R)) / std(f_u | class c)      (stat: median by default)

A unit is *biased* when its largest score over classes (those with at least ``min_errors`` errors)
exceeds ``threshold``; at most ``max_fraction`` of the units are kept, highest scores first. The
biased units are suppressed (their head columns are zero, which is the same as zeroing the unit for
a linear head) and the head is refit on class-balanced draws of the refit split with DFR's
L1 logistic regression (:func:`~spurmem.train.algorithms.dfr.fit_dfr` with the class as the
"group", so C is tuned by worst-*class* accuracy). ``rounds > 1`` repeats identification with the
refit head, as the paper alternates identification and retraining.

Our reading of the paper: the median difference between misclassified and correct examples per
class, suppression by zeroing, class-balanced last-layer retraining; the normalisation by the
within-class std (so that one threshold fits every unit) and the L1 refit are this implementation's.
Labels used: the class labels of the identification and refit splits and the model's predictions;
group labels only through the comparison's selection rule. Like DFR it trains nothing (``epochs=0``),
and the split it refits on is no longer held out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from spurmem.config import ConfigError
from spurmem.data.schema import GroupDataset
from spurmem.probes.units import get_module, head_name
from spurmem.train.algorithm import Algorithm
from spurmem.train.algorithms.dfr import DFRHead, DFRParams, fit_dfr, set_head
from spurmem.train.algorithms.features import extract_features
from spurmem.train.algorithms.params import parse_params


class NeuronTuneParams(DFRParams):
    """DFR's refit options (c_grid, tune_draws, n_draws, seed) plus the identification of units."""

    identification_split: Literal["val", "train"] = Field("val", description="split whose errors identify units")
    refit_split: Literal["val", "train"] = Field("val", description="split the head is refit on (class-balanced)")
    statistic: Literal["median", "mean"] = Field("median", description="activation statistic compared (paper: median)")
    threshold: float = Field(0.0, description="a unit is biased when its normalised score exceeds this")
    max_fraction: float = Field(0.5, gt=0.0, le=1.0, description="at most this share of the units is suppressed")
    min_errors: int = Field(3, ge=1, description="classes with fewer misclassified examples are not scored")
    rounds: int = Field(1, ge=1, description="identification + refit rounds (the suppressed set accumulates)")


def unit_scores(
    features: np.ndarray, y: np.ndarray, pred: np.ndarray, statistic: str = "median", min_errors: int = 3
) -> np.ndarray:
    """Per unit, the largest over classes of (stat over errors - stat over correct) / within-class std;
    ``-inf`` where no class has ``min_errors`` errors and one correct example."""
    stat = np.median if statistic == "median" else np.mean
    scores = np.full(features.shape[1], -np.inf)
    for c in np.unique(y):
        in_c = y == c
        wrong, right = in_c & (pred != c), in_c & (pred == c)
        if wrong.sum() < min_errors or right.sum() < 1:
            continue
        std = features[in_c].std(0)
        diff = stat(features[wrong], axis=0) - stat(features[right], axis=0)
        scores = np.maximum(scores, np.where(std > 0, diff / np.where(std > 0, std, 1.0), 0.0))
    return scores


def biased_units(scores: np.ndarray, threshold: float, max_fraction: float) -> np.ndarray:
    """Indices of units scoring above ``threshold``, highest first, at most ``max_fraction`` of them."""
    order = np.argsort(-scores, kind="stable")
    above = order[scores[order] > threshold]
    return above[: int(max_fraction * len(scores))]


@dataclass
class NeuronTuneResult:
    head: DFRHead
    suppressed: list[int]  # head-input unit indices, in the order they were found
    rounds: list[dict[str, Any]] = field(default_factory=list)  # per round: errors per class, units found


def fit_neurontune(
    id_features: np.ndarray, id_y: np.ndarray, weight: np.ndarray, bias: np.ndarray,
    refit_features: np.ndarray, refit_y: np.ndarray, n_classes: int, p: NeuronTuneParams,
) -> NeuronTuneResult:
    """Identify and suppress biased units starting from the head ``(weight, bias)``, refit; see the module."""
    suppressed: list[int] = []
    head = DFRHead(weight=np.asarray(weight, dtype=np.float64), bias=np.asarray(bias, dtype=np.float64), c=float("nan"))
    log = []
    for r in range(p.rounds):
        pred = head.logits(id_features).argmax(1)
        scores = unit_scores(id_features, id_y, pred, p.statistic, p.min_errors)
        scores[suppressed] = -np.inf
        budget = int(p.max_fraction * len(scores)) - len(suppressed)
        found = [int(u) for u in biased_units(scores, p.threshold, 1.0)[: max(budget, 0)]]
        suppressed += found
        errors = [int(((id_y == c) & (pred != c)).sum()) for c in range(n_classes)]
        log.append({"round": r + 1, "errors_by_class": errors,
                    "found": found, "scores": [round(float(scores[u]), 4) for u in found]})
        x = refit_features.copy()
        x[:, suppressed] = 0.0
        head = fit_dfr(x, refit_y, refit_y, n_classes, p.c_grid, p.tune_draws, p.n_draws, p.seed + r)
        head.weight[:, suppressed] = 0.0
        if not found:
            break
    return NeuronTuneResult(head, suppressed, log)


class NeuronTune(Algorithm):
    """Suppress biased penultimate units of an ERM model (``init_from``) and refit its head."""

    name = "neurontune"
    group_labels = "none"
    labels_note = ("validation class labels and the model's errors (identification and class-balanced refit); "
                   "no group labels")
    trains = False
    Params = NeuronTuneParams

    def __init__(self, dataset: GroupDataset, **hparams: Any) -> None:
        super().__init__(dataset, **hparams)
        self.params = parse_params(NeuronTuneParams, hparams, self.name)
        self.result: NeuronTuneResult | None = None

    def setup(self, model: torch.nn.Module, device: torch.device) -> None:
        p = self.params
        for split in {p.identification_split, p.refit_split}:
            if split not in self.dataset.splits:
                raise ConfigError(f"algorithm 'neurontune' needs a {split!r} split; dataset {self.dataset.name!r} "
                                  f"has {sorted(self.dataset.splits)}")
        head = get_module(model, head_name(model))
        if head.bias is None:
            raise ConfigError("algorithm 'neurontune' needs a classifier head with a bias")
        weight, bias = head.weight.detach().double().cpu().numpy(), head.bias.detach().double().cpu().numpy()
        feats = {s: extract_features(model, self.dataset, s, device=device)
                 for s in {p.identification_split, p.refit_split}}
        self.result = fit_neurontune(
            feats[p.identification_split], self.dataset[p.identification_split].y.numpy(), weight, bias,
            feats[p.refit_split], self.dataset[p.refit_split].y.numpy(), self.dataset.n_classes, p,
        )
        set_head(model, self.result.head)

    def describe(self) -> dict[str, Any]:
        """The suppressed units (indices into the head's input), the rounds, the refit's C, for run.json."""
        if self.result is None:
            return {}
        head = self.result.head
        return {"suppressed_units": self.result.suppressed, "n_units": int(head.weight.shape[1]),
                "rounds": self.result.rounds, "c": head.c,
                "tuning_worst_class_accuracy": {str(k): v for k, v in head.tuning.items()}}
