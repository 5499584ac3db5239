"""Verdicts: what a probe saw, named, with the statistic behind it (SPEC 5, issue outcomes).

A setting's effect on a minority group g is read from *relative* drops (the share of the accuracy
that was lost, ``(before - after) / before``) on the training split and on a held-out split, and
from the same-class majority group's relative training drop. :func:`classify` is a pure function of
those accuracies, so the probe runner and the localisation search share it.

Outcomes, in the order they are tested:

``no effect``
    g lost less than ``min_effect`` of its training accuracy.
``within random control``
    g lost more, but k random units do as much (the drop is not beyond the random control with the
    same k and intervention): the effect says nothing about these units.
``class collapse``
    the same-class majority lost at least ``collapse_ratio`` (0.25) times g's share: the units carry
    the class, not the group.
``group feature, not memorisation``
    g's held-out accuracy fell by a share at least ``feature_ratio`` (0.9) times its training share:
    the units carry the group's decision rule.
``localised memorisation``
    g's training share is at least ``memorisation_ratio`` times the size of its held-out share (a
    held-out *gain* counts too: it means the edit shifted predictions, not that it removed memorised
    examples), the majority is spared and the drop is beyond the random control.
``inconclusive``
    in between (held-out share between 1/memorisation_ratio and feature_ratio of the training
    share, or a large held-out gain), or memorisation-shaped without a random control to compare with.

Beside accuracies, every verdict carries the change in mean logit margin of g and of its majority:
minority examples sit near half the majority's margin, so they flip first under any perturbation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

NO_EFFECT = "no effect"
WITHIN_CONTROL = "within random control"
CLASS_COLLAPSE = "class collapse"
GROUP_FEATURE = "group feature, not memorisation"
LOCALISED = "localised memorisation"
INCONCLUSIVE = "inconclusive"
LABELS = (NO_EFFECT, WITHIN_CONTROL, CLASS_COLLAPSE, GROUP_FEATURE, LOCALISED, INCONCLUSIVE)


class Thresholds(BaseModel):
    """Named thresholds of the verdicts (shares are fractions of the accuracy before the edit)."""

    model_config = ConfigDict(extra="forbid")

    min_effect: float = Field(0.10, ge=0, description="least share of g's train accuracy lost to count as an effect")
    collapse_ratio: float = Field(0.25, ge=0, description="majority share >= this x g's share -> class collapse")
    feature_ratio: float = Field(0.9, ge=0, description="held-out share >= this x train share -> group feature "
                                                          "(0.9: 'at least as large' up to sampling noise)")
    memorisation_ratio: float = Field(2.0, ge=1, description="train share >= this x held-out share -> memorisation")
    control_z: float = Field(2.0, description="z-score vs the random control needed to call an effect beyond it")
    control_percentile: float = Field(95.0, ge=0, le=100,
                                      description="percentile within the random control needed as well")
    claim_specificity: float = Field(0.10, description="SPEC 5.1: least drop(g) - drop(majority), accuracy points")
    claim_max_k: int = Field(10, ge=1, description="SPEC 5.1: largest k a sensitivity claim may use")
    matrix_margin: float = Field(0.05, ge=0, description="SPEC 5.2: diagonal must beat the rest of its row by this")


@dataclass
class Verdict:
    """One classification with the numbers it rests on."""

    label: str
    reason: str
    statistics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def relative_drop(before: float, after: float) -> float:
    """Share of ``before`` that was lost; 0 when there was nothing to lose."""
    if not before or math.isnan(before) or math.isnan(after):
        return 0.0
    return (before - after) / before


@dataclass
class ControlPosition:
    """Where a value falls in the random control's distribution (same k, same intervention)."""

    n: int
    mean: float
    std: float
    percentile: float
    z: float

    def beyond(self, value_z: float, value_percentile: float) -> bool:
        return self.z >= value_z and self.percentile >= value_percentile


def control_position(value: float, control: Sequence[float]) -> ControlPosition | None:
    """Percentile (ties count half) and z-score of ``value`` among the control draws; None without draws.
    With a zero-spread control the z-score is +-inf (or 0 when equal)."""
    draws = np.asarray([c for c in control if not math.isnan(c)], dtype=float)
    if len(draws) == 0 or math.isnan(value):
        return None
    below = float((draws < value).sum() + 0.5 * (draws == value).sum())
    mean, std = float(draws.mean()), float(draws.std(ddof=1)) if len(draws) > 1 else 0.0
    if std > 0:
        z = (value - mean) / std
    else:
        z = 0.0 if value == mean else math.copysign(math.inf, value - mean)
    return ControlPosition(len(draws), mean, std, 100.0 * below / len(draws), z)


def classify(
    train_before: float,
    train_after: float,
    heldout_before: float,
    heldout_after: float,
    majority_before: float,
    majority_after: float,
    *,
    beyond_control: bool | None = None,
    thresholds: Thresholds | None = None,
    margin_change: float | None = None,
    majority_margin_change: float | None = None,
) -> Verdict:
    """Classify the effect of an edit on one minority group g from its accuracies before/after on the
    training and held-out splits and its same-class majority's training accuracies before/after.

    ``beyond_control`` says whether g's training drop exceeds the random control (None: no control).
    Margin changes (after - before, mean logit margin) are carried into the statistics.
    """
    t = thresholds or Thresholds()
    train_share = relative_drop(train_before, train_after)
    heldout_share = relative_drop(heldout_before, heldout_after)
    majority_share = relative_drop(majority_before, majority_after)
    stats = {
        "train_before": train_before, "train_after": train_after, "train_share": train_share,
        "heldout_before": heldout_before, "heldout_after": heldout_after, "heldout_share": heldout_share,
        "majority_before": majority_before, "majority_after": majority_after, "majority_share": majority_share,
        "specificity": (train_before - train_after) - (majority_before - majority_after),
        "beyond_control": beyond_control, "margin_change": margin_change,
        "majority_margin_change": majority_margin_change,
    }
    if train_share < t.min_effect:
        return Verdict(NO_EFFECT, f"g lost {train_share:.0%} of its train accuracy (< {t.min_effect:.0%})", stats)
    if beyond_control is False:
        return Verdict(WITHIN_CONTROL, f"g lost {train_share:.0%} of its train accuracy, but random units "
                       "with the same k and intervention do as much", stats)
    if majority_share >= t.collapse_ratio * train_share:
        return Verdict(CLASS_COLLAPSE, f"same-class majority lost {majority_share:.0%} of its train accuracy, "
                       f"g {train_share:.0%} (ratio >= {t.collapse_ratio})", stats)
    if heldout_share >= t.feature_ratio * train_share:
        return Verdict(GROUP_FEATURE, f"held-out share lost {heldout_share:.0%} >= {t.feature_ratio} x "
                       f"train share {train_share:.0%}", stats)
    if train_share >= t.memorisation_ratio * abs(heldout_share):
        if beyond_control is None:
            return Verdict(INCONCLUSIVE, "memorisation-shaped (train share "
                           f"{train_share:.0%}, held-out {heldout_share:.0%}) but no random control to compare", stats)
        return Verdict(LOCALISED, f"train share {train_share:.0%} >= {t.memorisation_ratio} x held-out share "
                       f"{heldout_share:.0%}, majority spared ({majority_share:.0%}), beyond the random control", stats)
    if heldout_share < 0:
        return Verdict(INCONCLUSIVE, f"train share lost {train_share:.0%} while held-out accuracy rose by "
                       f"{-heldout_share:.0%} of itself: the edit shifted predictions", stats)
    return Verdict(INCONCLUSIVE, f"held-out share {heldout_share:.0%} lies between the feature and memorisation "
                   f"thresholds for train share {train_share:.0%}", stats)


# -- claims of SPEC 5.1 and 5.2 ------------------------------------------------------------------

@dataclass
class ClaimVerdict:
    """``supported`` or ``not supported`` for one claim, with its statistic and the evidence rows."""

    claim: str
    supported: bool
    statistic: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["verdict"] = "supported" if self.supported else "not supported"
        return d


def sensitivity_claim(settings: Sequence[dict[str, Any]], thresholds: Thresholds | None = None) -> ClaimVerdict:
    """SPEC 5.1: a few top-ranked units lower a minority group's *training* accuracy far more than its
    same-class majority's, and far more than k random units do.

    Each entry of ``settings`` describes one (non-random) setting x minority group on the training
    split: ``k``, ``drop`` (accuracy points lost by g), ``specificity`` (drop(g) - drop(majority)),
    ``drop_z``/``drop_percentile`` and ``specificity_z``/``specificity_percentile`` (positions in the
    random control, None without one), and a ``setting`` label. Supported when at least one setting
    with k <= claim_max_k has specificity >= claim_specificity and both its drop and its specificity
    are beyond the control, and whose verdict (``verdict``, when given) is not class collapse; the
    statistic says how many of how many qualified.
    """
    t = thresholds or Thresholds()
    eligible = [s for s in settings if s.get("k") is not None and s["k"] <= t.claim_max_k]

    def beyond(s, prefix):
        z, p = s.get(f"{prefix}_z"), s.get(f"{prefix}_percentile")
        return z is not None and p is not None and z >= t.control_z and p >= t.control_percentile

    passing = [s for s in eligible if s["specificity"] >= t.claim_specificity and beyond(s, "drop")
               and beyond(s, "specificity") and s.get("verdict") != CLASS_COLLAPSE]
    best = max(eligible, key=lambda s: s["specificity"], default=None)
    if not eligible:
        return ClaimVerdict("5.1 sensitivity", False, f"no unit-scorer setting with k <= {t.claim_max_k} was run")
    pool = passing or [best]
    top = max(pool, key=lambda s: s["specificity"])
    stat = (f"{len(passing)} of {len(eligible)} settings x groups (k <= {t.claim_max_k}) have specificity >= "
            f"{t.claim_specificity:.2f} beyond the random control (z >= {t.control_z}, percentile >= "
            f"{t.control_percentile:g}) without class collapse; strongest: {top['setting']} group {top['group']}: "
            f"drop {top['drop']:.3f}, specificity {top['specificity']:.3f}, z {_fmt(top.get('specificity_z'))}"
            + (f", verdict: {top['verdict']}" if top.get("verdict") else ""))
    return ClaimVerdict("5.1 sensitivity", bool(passing), stat,
                        {"n_eligible": len(eligible), "n_passing": len(passing), "strongest": top})


def specificity_claim(matrices: dict[str, np.ndarray], minority_groups: Sequence[int],
                      thresholds: Thresholds | None = None) -> ClaimVerdict:
    """SPEC 5.2: units selected from a group's hardest examples hurt that group most.

    ``matrices`` maps a setting label to a G x G array of training-accuracy drops, row = group the
    units were selected from, column = group evaluated. For each minority g the diagonal must beat
    the largest other entry of its row by ``matrix_margin``; supported when that holds for every
    minority group in at least half of the matrices.
    """
    t = thresholds or Thresholds()
    if not matrices:
        return ClaimVerdict("5.2 group specificity", False, "no group-gradient matrix was run")
    per_setting, holds = {}, 0
    for label, m in matrices.items():
        margins = {}
        for g in minority_groups:
            row = np.asarray(m[g], dtype=float)
            if np.isnan(row[g]):
                continue
            others = np.delete(row, g)
            margins[g] = float(row[g] - np.nanmax(others))
        ok = bool(margins) and all(v >= t.matrix_margin for v in margins.values())
        holds += ok
        per_setting[label] = {"margins": margins, "holds": ok}
    supported = holds * 2 >= len(matrices) and holds > 0
    mean_margin = float(np.mean([v for d in per_setting.values() for v in d["margins"].values()] or [np.nan]))
    stat = (f"diagonal beats the rest of its row by >= {t.matrix_margin:.2f} for every minority group in "
            f"{holds} of {len(matrices)} matrices; mean margin {mean_margin:.3f}")
    return ClaimVerdict("5.2 group specificity", supported, stat, {"settings": per_setting})


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.2f}"
