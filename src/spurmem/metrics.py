"""Group-aware evaluation (docs/method.md §2): per-example predictions, per-group accuracy and the averages.

Every function returns a structured object; ``.table()`` gives a tidy pandas frame with one row per
split x group. Which average is which is part of the name: ``average`` is plain accuracy over the
split, ``adjusted_average`` weights group accuracies by the *training* group proportions (the
Waterbirds convention), ``balanced_accuracy`` is the unweighted mean over groups.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from spurmem.data.batches import iterate_batches
from spurmem.data.schema import GroupDataset, SplitData
from spurmem.device import resolve_device


@dataclass
class Predictions:
    """Per-example outputs of a model on one split."""

    split: str
    ids: list[str]
    y: np.ndarray
    a: np.ndarray
    group: np.ndarray
    logits: np.ndarray  # N x C, float32

    @property
    def pred(self) -> np.ndarray:
        return self.logits.argmax(axis=1)

    @property
    def correct(self) -> np.ndarray:
        return self.pred == self.y

    @property
    def loss(self) -> np.ndarray:
        t = torch.from_numpy(self.logits)
        return F.cross_entropy(t, torch.from_numpy(self.y), reduction="none").numpy()

    @property
    def p_true(self) -> np.ndarray:
        p = torch.softmax(torch.from_numpy(self.logits), dim=1).numpy()
        return p[np.arange(len(self.y)), self.y]

    @property
    def margin(self) -> np.ndarray:
        """Logit of the true class minus the largest other logit (negative when wrong)."""
        return logit_margin(self.logits, self.y)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "split": self.split, "id": self.ids, "y": self.y, "a": self.a, "group": self.group,
                "pred": self.pred, "p_true": self.p_true, "loss": self.loss, "margin": self.margin,
            }
        )


def logit_margin(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    rows = np.arange(len(y))
    true = logits[rows, y]
    other = logits.copy()
    other[rows, y] = -np.inf
    return true - other.max(axis=1)


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    dataset: GroupDataset,
    split: str,
    batch_size: int = 512,
    device: str | torch.device = "auto",
    indices: torch.Tensor | None = None,
) -> Predictions:
    """Run ``model`` in eval mode over ``split`` and collect logits (restores the train/eval mode)."""
    dev = resolve_device(device)
    was_training = model.training
    model.eval()
    data = dataset[split]
    out, seen = [], []
    try:
        for batch in iterate_batches(data, batch_size, dataset.mean, dataset.std, indices=indices):
            out.append(model(batch.x.to(dev)).float().cpu())
            seen.append(batch.index)
    finally:
        model.train(was_training)
    return predictions_at(data, split, torch.cat(seen).numpy(), torch.cat(out).numpy())


def predictions_at(data: SplitData, split: str, idx: np.ndarray, logits: np.ndarray) -> Predictions:
    """:class:`Predictions` of the examples ``idx`` of ``data`` (a split's data) with their ``logits`` rows."""
    return Predictions(
        split=split,
        ids=[data.ids[i] for i in idx],
        y=data.y.numpy()[idx],
        a=data.a.numpy()[idx],
        group=data.group.numpy()[idx],
        logits=logits,
    )


@dataclass
class GroupResult:
    group: int
    name: str
    correct: int
    count: int
    mean_margin: float

    @property
    def accuracy(self) -> float:
        return self.correct / self.count if self.count else float("nan")


@dataclass
class SplitMetrics:
    """Group accuracies and averages for one split; the averages are named, never implicit."""

    split: str
    groups: list[GroupResult]
    average: float
    adjusted_average: float
    balanced_accuracy: float
    worst_group_accuracy: float
    worst_group: int
    worst_class_accuracy: float
    class_accuracy: list[float] = field(default_factory=list)

    def group_accuracy(self, g: int) -> float:
        return self.groups[g].accuracy

    def to_dict(self) -> dict:
        d = asdict(self)
        for row, gr in zip(d["groups"], self.groups):
            row["accuracy"] = gr.accuracy
        return d

    def table(self) -> pd.DataFrame:
        """Tidy: one row per group."""
        return pd.DataFrame(
            [
                {"split": self.split, "group": g.group, "group_name": g.name, "correct": g.correct,
                 "count": g.count, "accuracy": g.accuracy, "mean_margin": g.mean_margin}
                for g in self.groups
            ]
        )


def split_metrics(
    correct: np.ndarray,
    group: np.ndarray,
    y: np.ndarray,
    dataset: GroupDataset,
    split: str,
    margin: np.ndarray | None = None,
) -> SplitMetrics:
    """Metrics from per-example correctness; groups absent from the split are left out of WGA."""
    correct = np.asarray(correct, dtype=bool)
    group = np.asarray(group)
    y = np.asarray(y)
    n_groups = dataset.n_groups
    counts = np.bincount(group, minlength=n_groups)
    hits = np.bincount(group, weights=correct, minlength=n_groups).astype(int)
    margins = np.full(n_groups, np.nan)
    if margin is not None:
        sums = np.bincount(group, weights=np.asarray(margin, dtype=float), minlength=n_groups)
        margins = np.divide(sums, counts, out=np.full(n_groups, np.nan), where=counts > 0)
    names = dataset.group_names
    groups = [GroupResult(g, names[g], int(hits[g]), int(counts[g]), float(margins[g])) for g in range(n_groups)]
    present = counts > 0
    acc = np.divide(hits, counts, out=np.zeros(n_groups), where=present)
    w = dataset.train_group_proportions * present
    adjusted = float((acc * w).sum() / w.sum()) if w.sum() > 0 else float("nan")
    worst = int(np.flatnonzero(present)[np.argmin(acc[present])])
    class_acc = []
    for c in range(dataset.n_classes):
        mask = y == c
        class_acc.append(float(correct[mask].mean()) if mask.any() else float("nan"))
    present_classes = [v for v in class_acc if not np.isnan(v)]
    return SplitMetrics(
        split=split,
        groups=groups,
        average=float(correct.mean()) if len(correct) else float("nan"),
        adjusted_average=adjusted,
        balanced_accuracy=float(acc[present].mean()),
        worst_group_accuracy=float(acc[worst]),
        worst_group=worst,
        worst_class_accuracy=float(min(present_classes)) if present_classes else float("nan"),
        class_accuracy=class_acc,
    )


def metrics_from_predictions(pred: Predictions, dataset: GroupDataset) -> SplitMetrics:
    return split_metrics(pred.correct, pred.group, pred.y, dataset, pred.split, margin=pred.margin)


def evaluate(
    model: torch.nn.Module,
    dataset: GroupDataset,
    splits: Iterable[str] = ("train", "val", "test"),
    batch_size: int = 512,
    device: str | torch.device = "auto",
) -> dict[str, SplitMetrics]:
    """Evaluate every requested split that the dataset has; returns ``{split: SplitMetrics}``."""
    return {
        s: metrics_from_predictions(predict(model, dataset, s, batch_size, device), dataset)
        for s in splits
        if s in dataset.splits
    }


def metrics_table(results: dict[str, SplitMetrics]) -> pd.DataFrame:
    """Tidy table, one row per split x group."""
    return pd.concat([m.table() for m in results.values()], ignore_index=True)


def memorization_gap(train: SplitMetrics, heldout: SplitMetrics) -> list[float]:
    """Per group: acc_g(train) - acc_g(held-out) for the same model (docs/method.md §2)."""
    return [t.accuracy - h.accuracy for t, h in zip(train.groups, heldout.groups)]


def memorization_gap_table(train: SplitMetrics, heldout: SplitMetrics, dataset: GroupDataset) -> pd.DataFrame:
    """Tidy per-group memorisation gap: one row per group with its role (majority/minority), the
    train and held-out accuracies and counts, and ``gap`` = train minus held-out accuracy."""
    minority = set(dataset.minority_groups)
    gaps = memorization_gap(train, heldout)
    return pd.DataFrame(
        [
            {"group": t.group, "group_name": t.name, "role": "minority" if t.group in minority else "majority",
             "train_accuracy": t.accuracy, "train_count": t.count, "heldout_split": heldout.split,
             "heldout_accuracy": h.accuracy, "heldout_count": h.count, "gap": gap}
            for t, h, gap in zip(train.groups, heldout.groups, gaps)
        ]
    )


def averages_table(results: dict[str, SplitMetrics]) -> pd.DataFrame:
    """Tidy table of the named averages: one row per split x average."""
    names = ("worst_group_accuracy", "average", "adjusted_average", "balanced_accuracy", "worst_class_accuracy")
    return pd.DataFrame(
        [{"split": s, "average": name, "value": getattr(m, name)} for s, m in results.items() for name in names]
    )


def summarize(results: dict[str, SplitMetrics], keys: Sequence[str] = ("worst_group_accuracy", "average",
              "adjusted_average", "balanced_accuracy", "worst_class_accuracy")) -> dict[str, float]:
    """Flat ``{split/metric: value}`` dict, e.g. for metrics.jsonl."""
    flat: dict[str, float] = {}
    for s, m in results.items():
        for k in keys:
            flat[f"{s}/{k}"] = getattr(m, k)
        for g in m.groups:
            flat[f"{s}/acc_g{g.group}"] = g.accuracy
    return flat
