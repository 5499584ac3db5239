"""Deep Feature Reweighting (Kirichenko et al. 2023; docs/method.md §7).

The penultimate features of a trained ERM model stay fixed; only the classifier head is refit, by
L1-regularised logistic regression on *group-balanced* draws of the validation split:

1. standardise the features (statistics of the validation split);
2. tune C: fit on balanced draws of one random half of val, score worst-group accuracy on the other
   half, keep the C with the best mean over draws;
3. refit with that C on ``n_draws`` balanced draws of all of val and average the coefficients.

The result is written into the model's head, so the run directory holds an ordinary model that
``load_run``, evaluation and the probes use like any other. It needs val group labels, and val is
then no longer held out for model selection (the paper's DFR^Val_Tr protocol).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from pydantic import Field

from spurmem.data.schema import GroupDataset
from spurmem.probes.units import get_module, head_name
from spurmem.train.algorithm import Algorithm
from spurmem.train.algorithms.features import extract_features
from spurmem.train.algorithms.params import AlgorithmParams, parse_params

DEFAULT_C_GRID = (1.0, 0.7, 0.3, 0.1, 0.07, 0.03, 0.01)


class DFRParams(AlgorithmParams):
    c_grid: list[float] = Field(list(DEFAULT_C_GRID), min_length=1, description="inverse L1 strengths tried")
    tune_draws: int = Field(3, ge=1, description="balanced draws per C when tuning on half of val")
    n_draws: int = Field(10, ge=1, description="balanced draws of all of val averaged in the final head")
    seed: int = Field(0, description="seed of the val halving and the balanced draws")


@dataclass
class DFRHead:
    """The refit head in the original feature space: ``logits = features @ weight.T + bias``."""

    weight: np.ndarray  # n_classes x D
    bias: np.ndarray  # n_classes
    c: float
    tuning: dict[float, float] = field(default_factory=dict)  # C -> mean worst-group acc on the held half

    def logits(self, features: np.ndarray) -> np.ndarray:
        return features @ self.weight.T + self.bias


def balanced_draw(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices with the same number (the smallest group's count) from every group present."""
    present = np.unique(groups)
    n = min(int((groups == g).sum()) for g in present)
    return np.concatenate([rng.choice(np.flatnonzero(groups == g), n, replace=False) for g in present])


def _l1_logistic(c: float, solver: str, random_state: int = 0):
    """An L1 LogisticRegression in the spelling of the installed scikit-learn (1.8 renamed it). liblinear
    and saga shuffle the data with ``random_state``; left unset, two fits of the same draw differ."""
    import sklearn
    from sklearn.linear_model import LogisticRegression

    major, minor = (int(v) for v in sklearn.__version__.split(".")[:2])
    l1 = {"l1_ratio": 1.0} if (major, minor) >= (1, 8) else {"penalty": "l1"}
    return LogisticRegression(C=c, solver=solver, max_iter=2000, random_state=random_state, **l1)


def _fit(x: np.ndarray, y: np.ndarray, c: float, n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """L1 logistic regression; returns (n_classes x D, n_classes) logits parameters."""
    clf = _l1_logistic(c, "liblinear" if n_classes == 2 else "saga", random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence notes on tiny balanced draws
        clf.fit(x, y)
    coef, intercept = clf.coef_, clf.intercept_
    if n_classes == 2:  # one logit z for class 1: use [-z/2, z/2], same softmax and argmax
        coef = np.concatenate([-coef / 2, coef / 2])
        intercept = np.concatenate([-intercept / 2, intercept / 2])
    full_w = np.zeros((n_classes, x.shape[1]))
    full_b = np.zeros(n_classes)
    full_w[clf.classes_ if n_classes > 2 else [0, 1]] = coef
    full_b[clf.classes_ if n_classes > 2 else [0, 1]] = intercept
    return full_w, full_b


def _worst_group_accuracy(logits: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    correct = logits.argmax(1) == y
    return float(min(correct[groups == g].mean() for g in np.unique(groups)))


def fit_dfr(
    features: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    n_classes: int,
    c_grid=DEFAULT_C_GRID,
    tune_draws: int = 3,
    n_draws: int = 10,
    seed: int = 0,
) -> DFRHead:
    """DFR on (validation) features with group labels; see the module docstring."""
    features = np.asarray(features, dtype=np.float64)
    mean, scale = features.mean(0), features.std(0)
    scale[scale == 0] = 1.0
    x = (features - mean) / scale
    rng = np.random.default_rng(seed)
    half = np.zeros(len(y), dtype=bool)
    for g in np.unique(groups):  # a stratified half, so every group is in both halves
        idx = rng.permutation(np.flatnonzero(groups == g))
        half[idx[: len(idx) // 2]] = True
    fit_idx, held_idx = np.flatnonzero(half), np.flatnonzero(~half)
    tuning = {}
    for c in c_grid:
        scores = []
        for _ in range(tune_draws):
            draw = fit_idx[balanced_draw(groups[fit_idx], rng)]
            w, b = _fit(x[draw], y[draw], c, n_classes, seed)
            scores.append(_worst_group_accuracy(x[held_idx] @ w.T + b, y[held_idx], groups[held_idx]))
        tuning[float(c)] = float(np.mean(scores))
    best_c = max(tuning, key=lambda c: (tuning[c], -c))  # ties: the stronger regularisation
    ws, bs = [], []
    for _ in range(n_draws):
        draw = balanced_draw(groups, rng)
        w, b = _fit(x[draw], y[draw], best_c, n_classes, seed)
        ws.append(w)
        bs.append(b)
    w_std, b_std = np.mean(ws, 0), np.mean(bs, 0)
    weight = w_std / scale  # back to the raw feature space
    bias = b_std - (w_std * mean / scale).sum(1)
    return DFRHead(weight=weight, bias=bias, c=best_c, tuning=tuning)


def set_head(model: torch.nn.Module, head: DFRHead) -> None:
    """Write the refit head into the model's Linear classifier (in place)."""
    module = get_module(model, head_name(model))
    with torch.no_grad():
        module.weight.copy_(torch.as_tensor(head.weight, dtype=module.weight.dtype))
        if module.bias is not None:
            module.bias.copy_(torch.as_tensor(head.bias, dtype=module.bias.dtype))
        else:
            raise ValueError("DFR needs a classifier head with a bias")


class DFR(Algorithm):
    """Refit the head of an ERM model (``init_from``) on group-balanced validation features.

    All the work happens in ``setup``; the trainer runs it with ``epochs=0`` (``trains = False``), so
    the backbone, including BatchNorm statistics, is left exactly as the ERM run made it.
    """

    name = "dfr"
    group_labels = "validation"
    labels_note = "validation group labels (group-balanced head refit, C tuned by val WGA)"
    trains = False
    Params = DFRParams

    def __init__(self, dataset: GroupDataset, **hparams: Any) -> None:
        super().__init__(dataset, **hparams)
        self.params = parse_params(DFRParams, hparams, self.name)
        self.head: DFRHead | None = None

    def setup(self, model: torch.nn.Module, device: torch.device) -> None:
        if "val" not in self.dataset.splits:
            from spurmem.config import ConfigError

            raise ConfigError(f"algorithm 'dfr' needs a 'val' split; dataset {self.dataset.name!r} has none")
        feats = extract_features(model, self.dataset, "val", device=device)
        val = self.dataset["val"]
        p = self.params
        self.head = fit_dfr(
            feats, val.y.numpy(), val.group.numpy(), self.dataset.n_classes,
            p.c_grid, p.tune_draws, p.n_draws, p.seed,
        )
        set_head(model, self.head)

    def describe(self) -> dict[str, Any]:
        """The chosen C and the tuning curve, for the run record."""
        if self.head is None:
            return {}
        return {"c": self.head.c, "tuning_worst_group_accuracy": {str(k): v for k, v in self.head.tuning.items()}}
