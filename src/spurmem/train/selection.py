"""Model selection over a metrics history by a named rule; the rule and result go into the run.

``val_wga`` (default, needs group labels on val), ``val_worst_class`` (no group labels),
``val_average`` (plain validation accuracy) or ``last``. Ties go to the earliest epoch. Epoch 0
(the initialisation) is a candidate only when it is the only evaluated epoch. An epoch whose training
loss is NaN or infinite is never a candidate.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

SELECTION_METRICS = {
    "val_wga": "val/worst_group_accuracy",
    "val_worst_class": "val/worst_class_accuracy",
    "val_average": "val/average",
    "last": None,
}


@dataclass(frozen=True)
class Selection:
    """The chosen epoch, the rule, the metric key it maximised and that metric's value."""

    rule: str
    epoch: int
    metric: str | None
    value: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def select_epoch(history: Sequence[dict[str, Any]], rule: str = "val_wga") -> Selection:
    """Pick the epoch of ``history`` (rows with an ``"epoch"`` key and flat metric keys) by ``rule``."""
    if rule not in SELECTION_METRICS:
        raise ValueError(f"unknown selection rule {rule!r}; known: {', '.join(SELECTION_METRICS)}")
    if not history:
        raise ValueError("cannot select an epoch from an empty metrics history")
    history = [row for row in history if _finite(row.get("train_loss"))]  # a diverged epoch is never picked
    if not history:
        raise ValueError("cannot select an epoch: every epoch of the metrics history has a non-finite training loss")
    trained = [row for row in history if row["epoch"] > 0] or list(history)
    metric = SELECTION_METRICS[rule]
    if metric is None:
        row = max(trained, key=lambda r: r["epoch"])
        return Selection(rule, int(row["epoch"]), None, None)
    scored = [(row[metric], row["epoch"]) for row in trained
              if row.get(metric) is not None and math.isfinite(row[metric])]
    if not scored:
        raise ValueError(f"selection rule {rule!r} needs {metric!r} in the metrics history "
                         f"(evaluate the val split: eval_splits must include 'val')")
    best_value = max(v for v, _ in scored)
    best_epoch = min(e for v, e in scored if v == best_value)
    return Selection(rule, int(best_epoch), metric, float(best_value))


def _finite(value: Any) -> bool:
    """None (not trained, e.g. epoch 0) counts as finite; NaN and infinities do not."""
    return value is None or math.isfinite(float(value))
