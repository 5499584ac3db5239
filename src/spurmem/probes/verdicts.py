"""Verdicts: what a probe saw, named, with the statistic behind it (docs/method.md §5).

A setting's effect on a minority group g is read from *relative* changes (the share of the accuracy
that was lost, ``(before - after) / before``; negative when it rose) of g on the training split and
on a held-out split, and of *every other group* on both splits (:class:`GroupChange`); the
predicted-class histograms of the held-out split say whether the edit moved the decision boundary
(:func:`prediction_shift`). :func:`classify` is a pure function of those numbers, so the probe
runner, the localisation search and the unit-level scan share one rule.

Outcomes, in the order they are tested (``tolerance`` below is ``collateral`` x the accuracy before,
at least ``collateral_floor``; :func:`tolerance`):

``no effect``
    g lost less than ``min_effect`` of its training accuracy and its held-out accuracy stayed within
    tolerance (what happened to other groups is in their own rows).
``within random control``
    g lost more, but k random units do as much (not beyond the random control): the effect says
    nothing about these units.
``class collapse``
    the same-class majority lost at least ``collapse_ratio`` times g's share of its training
    accuracy: the units carry the class, not the group.
``broad disruption``
    another group (any class, train or held-out) lost more than tolerance: the units carry a feature
    many groups use. The reason names the worst such group and its drop.
``prediction shift``
    g's held-out accuracy rose beyond tolerance, another group gained beyond tolerance, or at least
    ``shift_groups`` groups' held-out predictions moved toward one class by more than ``collateral``
    of their examples: the edit moved the decision boundary. The reason names the class.
``group feature, not memorisation``
    g's held-out accuracy fell by a share at least ``feature_ratio`` times its training share: the
    units carry the group's decision rule.
``localised memorisation``
    g's training share is at least ``memorisation_ratio`` times its held-out change, the held-out
    change is within tolerance in both directions, every other group stayed within tolerance, and
    the drop is beyond the random control.
``inconclusive``
    anything else (held-out share between the two ratios, g's held-out fell while its training
    accuracy held, or memorisation-shaped without a usable random control).

Beside accuracies, every verdict carries the change in mean logit margin of g and of its majority:
minority examples sit near half the majority's margin, so they flip first under any perturbation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

NO_EFFECT = "no effect"
WITHIN_CONTROL = "within random control"
CLASS_COLLAPSE = "class collapse"
BROAD_DISRUPTION = "broad disruption"
PREDICTION_SHIFT = "prediction shift"
GROUP_FEATURE = "group feature, not memorisation"
LOCALISED = "localised memorisation"
INCONCLUSIVE = "inconclusive"
LABELS = (NO_EFFECT, WITHIN_CONTROL, CLASS_COLLAPSE, BROAD_DISRUPTION, PREDICTION_SHIFT, GROUP_FEATURE, LOCALISED,
          INCONCLUSIVE)

# claim statuses (the report's table uses the same words)
SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE_CLAIM, NOT_TESTABLE = "supported", "not supported", "inconclusive", \
    "not testable"
CLAIM_STATUSES = (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE_CLAIM, NOT_TESTABLE)

# the claims a probe grid answers (verdicts.json "claims", in this order)
SENSITIVITY_CLAIM, SPECIFICITY_CLAIM = "5.1 sensitivity", "5.2 group specificity"
PROBE_CLAIMS = (SENSITIVITY_CLAIM, SPECIFICITY_CLAIM)


class Thresholds(BaseModel):
    """Named thresholds of the verdicts (shares are fractions of the accuracy before the edit);
    docs/method.md §5 explains each."""

    model_config = ConfigDict(extra="forbid")

    min_effect: float = Field(0.10, ge=0, description="least share of g's train accuracy lost to count as an effect")
    collapse_ratio: float = Field(0.25, ge=0, description="majority share >= this x g's share -> class collapse")
    collateral: float = Field(0.10, ge=0, description="tolerance: every other group's train and held-out accuracy, "
                              "and g's held-out accuracy, must change by at most this share of itself")
    collateral_floor: float = Field(0.02, ge=0, description="the tolerance is never below this many accuracy points "
                                    "(near zero accuracy a share of itself is less than one example)")
    shift_groups: int = Field(2, ge=1, description="held-out histograms of at least this many groups moving toward "
                              "one class (by more than `collateral` of their examples) -> prediction shift")
    feature_ratio: float = Field(0.9, ge=0, description="held-out share >= this x train share -> group feature "
                                                          "(0.9: 'at least as large' up to sampling noise)")
    memorisation_ratio: float = Field(2.0, ge=1, description="train share >= this x held-out share -> memorisation")
    control_p: float = Field(0.10, gt=0, le=1, description="beyond the random control: exact one-sided p-value "
                             "(1 + draws >= value) / (1 + draws) at most this; needs >= 1/control_p - 1 draws")
    fit_min_train: float = Field(0.5, ge=0, le=1, description="testable only if some minority group's train "
                                 "accuracy is at least this (the model fitted its minority examples)")
    fit_min_gap: float = Field(0.10, ge=0, le=1, description="... and exceeds its held-out accuracy by this")
    claim_specificity: float = Field(0.10, description="§5.1: least drop(g) - drop(majority), accuracy points")
    claim_max_k: int = Field(10, ge=1, description="§5.1: largest k a sensitivity claim may use")
    matrix_margin: float = Field(0.05, ge=0, description="§5.2: diagonal must beat the rest of its row by this")

    @property
    def min_control_draws(self) -> int:
        """Fewest random draws whose smallest attainable p-value, 1 / (draws + 1), is <= ``control_p``."""
        return max(1, math.ceil(1 / self.control_p - 1 - 1e-9))


@dataclass
class Verdict:
    """One classification with the numbers it rests on."""

    label: str
    reason: str
    statistics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GroupChange:
    """Accuracy of one other group before/after the edit on the training and held-out splits
    (NaN where the split was not evaluated)."""

    name: str
    train_before: float
    train_after: float
    heldout_before: float
    heldout_after: float


def relative_drop(before: float, after: float) -> float:
    """Share of ``before`` that was lost (negative when it rose); 0 when there was nothing to lose."""
    if not before or math.isnan(before) or math.isnan(after):
        return 0.0
    return (before - after) / before


def _moved(before: float, after: float, t: "Thresholds") -> float:
    """``after - before`` when it exceeds the tolerance (either direction), else 0."""
    if before is None or after is None or math.isnan(before) or math.isnan(after):
        return 0.0
    change = after - before
    return change if abs(change) > tolerance(before, t) + 1e-12 else 0.0


def tolerance(before: float, thresholds: "Thresholds | None" = None) -> float:
    """How far a group's accuracy may move and still count as untouched: ``collateral`` x its accuracy
    before the edit, at least ``collateral_floor``."""
    t = thresholds or Thresholds()
    return max(t.collateral * before, t.collateral_floor)


def prediction_shift(histograms: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                     class_names: Sequence[str], thresholds: Thresholds | None = None) -> tuple[str, list[str]] | None:
    """The class toward which at least ``shift_groups`` groups' predictions moved, and those groups.

    ``histograms`` maps a group name to its held-out predicted-class counts (before, after). A group
    moved toward class c when the share of its examples predicted as c rose by more than
    ``collateral``. None when no class gathers enough groups."""
    t = thresholds or Thresholds()
    toward: dict[int, list[str]] = {}
    for name, (before, after) in histograms.items():
        b, a = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
        n = b.sum()
        if not n or not np.isfinite(a).all():
            continue
        for c in np.flatnonzero((a - b) / n > t.collateral + 1e-12):
            toward.setdefault(int(c), []).append(name)
    best = max(toward.items(), key=lambda kv: len(kv[1]), default=None)
    if best is None or len(best[1]) < t.shift_groups:
        return None
    return class_names[best[0]], best[1]


@dataclass
class ControlPosition:
    """Where a value falls among the random control's draws (same k, same intervention): the
    percentile (ties count half) and the exact one-sided p-value ``(1 + #draws >= value) / (1 + n)``.
    Both are finite whatever the spread of the draws."""

    n: int
    mean: float
    std: float
    percentile: float
    p_value: float

    def beyond(self, thresholds: Thresholds | None = None) -> bool | None:
        """True/False when the draws can decide at ``control_p``; None with too few draws."""
        t = thresholds or Thresholds()
        if self.n < t.min_control_draws:
            return None
        return self.p_value <= t.control_p + 1e-12


def control_position(value: float, control: Sequence[float]) -> ControlPosition | None:
    """Percentile and exact p-value of ``value`` among the control draws; None without draws."""
    draws = np.asarray([c for c in control if not math.isnan(c)], dtype=float)
    if len(draws) == 0 or math.isnan(value):
        return None
    below = float((draws < value).sum() + 0.5 * (draws == value).sum())
    mean, std = float(draws.mean()), float(draws.std(ddof=1)) if len(draws) > 1 else 0.0
    p = float((1 + (draws >= value - 1e-12).sum()) / (1 + len(draws)))
    return ControlPosition(len(draws), mean, std, 100.0 * below / len(draws), p)


def classify(
    train_before: float,
    train_after: float,
    heldout_before: float,
    heldout_after: float,
    majority_before: float,
    majority_after: float,
    *,
    others: Sequence[GroupChange] = (),
    shift: tuple[str, list[str]] | None = None,
    beyond_control: bool | None = None,
    control_note: str = "",
    thresholds: Thresholds | None = None,
    margin_change: float | None = None,
    majority_margin_change: float | None = None,
) -> Verdict:
    """Classify the effect of an edit on one minority group g (see the module docstring).

    Positional: g's accuracies before/after on the training and held-out splits and its same-class
    majority's training accuracies. ``others``: every other group (the majority included, for its
    held-out accuracy; without ``others`` the majority's training accuracy alone); ``shift``:
    :func:`prediction_shift` of the held-out histograms. ``beyond_control`` says whether g's training drop exceeds the random control (None: no usable
    control; ``control_note`` says why). Margin changes (after - before) go into the statistics.
    """
    t = thresholds or Thresholds()
    train_share = relative_drop(train_before, train_after)
    heldout_share = relative_drop(heldout_before, heldout_after)
    majority_share = relative_drop(majority_before, majority_after)
    if not others:  # at least the same-class majority's training accuracy enters the tolerance check
        others = [GroupChange("same-class majority", majority_before, majority_after, math.nan, math.nan)]
    moves = []  # (change, group, split, before, after) of other groups beyond tolerance
    for o in others:
        for split, b, a in (("train", o.train_before, o.train_after), ("held-out", o.heldout_before, o.heldout_after)):
            if (m := _moved(b, a, t)) != 0:
                moves.append((m, o.name, split, b, a))
    heldout_move = _moved(heldout_before, heldout_after, t)
    drops = sorted((m for m in moves if m[0] < 0), key=lambda m: m[0])
    gains = sorted((m for m in moves if m[0] > 0), key=lambda m: -m[0])
    stats = {
        "train_before": train_before, "train_after": train_after, "train_share": train_share,
        "heldout_before": heldout_before, "heldout_after": heldout_after, "heldout_share": heldout_share,
        "majority_before": majority_before, "majority_after": majority_after, "majority_share": majority_share,
        "specificity": (train_before - train_after) - (majority_before - majority_after),
        "beyond_control": beyond_control, "margin_change": margin_change,
        "majority_margin_change": majority_margin_change,
        "worst_other": f"{drops[0][1]} ({drops[0][2]})" if drops else None,
        "worst_other_drop": -drops[0][0] if drops else 0.0,
        "shift_class": shift[0] if shift else None,
    }
    shift_text = f"; predictions of {', '.join(shift[1])} moved toward {shift[0]}" if shift else ""
    if train_share < t.min_effect and not heldout_move:
        return Verdict(NO_EFFECT, f"g lost {train_share:.0%} of its train accuracy (< {t.min_effect:.0%}) and its "
                       f"held-out accuracy moved by at most {t.collateral:.0%} of itself", stats)
    effect = train_share >= t.min_effect
    if effect and beyond_control is False:
        return Verdict(WITHIN_CONTROL, f"g lost {train_share:.0%} of its train accuracy, but random units "
                       "with the same k and intervention do as much", stats)
    if effect and majority_share >= t.collapse_ratio * train_share:
        return Verdict(CLASS_COLLAPSE, f"same-class majority lost {majority_share:.0%} of its train accuracy, "
                       f"g {train_share:.0%} (ratio >= {t.collapse_ratio})", stats)
    if drops:
        _, name, split, b, a = drops[0]
        return Verdict(BROAD_DISRUPTION, f"{name} {split} accuracy fell {b:.1%} -> {a:.1%} (more than "
                       f"{t.collateral:.0%} of itself; {len(drops)} group-split(s) beyond tolerance) while g lost "
                       f"{train_share:.0%} of its train accuracy{shift_text}", stats)
    if heldout_move > 0 or gains or shift is not None:
        what = (f"g's held-out accuracy rose {heldout_before:.1%} -> {heldout_after:.1%}" if heldout_move > 0 else
                f"{gains[0][1]} {gains[0][2]} accuracy rose {gains[0][3]:.1%} -> {gains[0][4]:.1%}" if gains else
                "held-out predictions moved")
        return Verdict(PREDICTION_SHIFT, f"{what} (g lost {train_share:.0%} of its train accuracy){shift_text}: "
                       "the edit moved the decision boundary", stats)
    if not effect:
        return Verdict(INCONCLUSIVE, f"g's held-out accuracy fell {heldout_before:.1%} -> {heldout_after:.1%} while "
                       f"its train accuracy held (lost {train_share:.0%})", stats)
    if heldout_share >= t.feature_ratio * train_share:
        return Verdict(GROUP_FEATURE, f"held-out share lost {heldout_share:.0%} >= {t.feature_ratio} x "
                       f"train share {train_share:.0%}", stats)
    if not heldout_move and train_share >= t.memorisation_ratio * abs(heldout_share):
        if beyond_control is None:
            return Verdict(INCONCLUSIVE, "memorisation-shaped (train share "
                           f"{train_share:.0%}, held-out {heldout_share:.0%}) but "
                           f"{control_note or 'no random control to compare'}", stats)
        return Verdict(LOCALISED, f"train share {train_share:.0%} >= {t.memorisation_ratio} x held-out share "
                       f"{heldout_share:.0%}, every other group within {t.collateral:.0%}, beyond the random "
                       "control", stats)
    return Verdict(INCONCLUSIVE, f"held-out share {heldout_share:.0%} lies between the feature and memorisation "
                   f"thresholds for train share {train_share:.0%}", stats)


# -- claims of docs/method.md §5.1 and §5.2 ------------------------------------------------------

@dataclass
class ClaimVerdict:
    """``status`` (one of :data:`CLAIM_STATUSES`) for one claim, with its statistic and the evidence rows."""

    claim: str
    status: str
    statistic: str
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in CLAIM_STATUSES:
            raise ValueError(f"claim status {self.status!r} is not one of {', '.join(CLAIM_STATUSES)}")

    @property
    def supported(self) -> bool:
        return self.status == SUPPORTED

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["verdict"] = self.status
        d["supported"] = self.supported
        return d


def fit_precondition(fit: Mapping[str, tuple[float, float]], thresholds: Thresholds | None = None) -> str | None:
    """Why the claims about memorisation cannot be tested on this model, or None when they can.

    ``fit`` maps each minority group to its (train, held-out) accuracy before any edit. There is
    memorisation to find only when some minority group's training accuracy is at least
    ``fit_min_train`` and exceeds its held-out accuracy by ``fit_min_gap``."""
    t = thresholds or Thresholds()
    if not fit:
        return "no minority group was evaluated on both the training and the held-out split"
    ok = [g for g, (tr, ho) in fit.items() if tr >= t.fit_min_train and tr - ho >= t.fit_min_gap]
    if ok:
        return None
    shown = ", ".join(f"{g} train {tr:.1%} / held-out {ho:.1%}" for g, (tr, ho) in fit.items())
    return (f"the model did not fit its minority training examples well above their held-out accuracy "
            f"(needs train >= {t.fit_min_train:.0%} and a gap >= {t.fit_min_gap:.0%}; {shown}): "
            "there is no memorisation to find")


def sensitivity_claim(settings: Sequence[dict[str, Any]], thresholds: Thresholds | None = None, *,
                      precondition: str | None = None) -> ClaimVerdict:
    """§5.1: a few top-ranked units lower a minority group's *training* accuracy far more than its
    same-class majority's, and far more than k random units do, and the edit reads as memorisation.

    Each entry of ``settings`` is one (non-random) setting x minority group on the training split:
    ``k``, ``drop`` (accuracy points lost by g), ``specificity`` (drop(g) - drop(majority)),
    ``drop_p``/``specificity_p`` (exact p-values against the random control), ``control_n`` (its
    draws), ``verdict`` (the setting's own verdict for g) and ``setting``/``group`` labels.
    A setting supports the claim when k <= claim_max_k, specificity >= claim_specificity, both
    p-values <= control_p and its own verdict is ``localised memorisation``: a group feature, class
    collapse or shift is never support. ``precondition`` (:func:`fit_precondition`) makes it not
    testable, as does a random control with too few draws for every eligible setting.
    """
    t = thresholds or Thresholds()
    name = SENSITIVITY_CLAIM
    if precondition:
        return ClaimVerdict(name, NOT_TESTABLE, precondition)
    eligible = [s for s in settings if s.get("k") is not None and s["k"] <= t.claim_max_k]
    if not eligible:
        return ClaimVerdict(name, NOT_TESTABLE, f"no unit-scorer setting with k <= {t.claim_max_k} was run")
    usable = [s for s in eligible if (s.get("control_n") or 0) >= t.min_control_draws]
    if not usable:
        most = max((s.get("control_n") or 0) for s in eligible)
        return ClaimVerdict(name, NOT_TESTABLE, f"the random control has at most {most} draw(s) per setting; "
                            f"{t.min_control_draws} are needed for p <= {t.control_p:g} (raise `repeats`)",
                            {"n_eligible": len(eligible)})

    def beyond(s, prefix):
        p = s.get(f"{prefix}_p")
        return p is not None and p <= t.control_p + 1e-12

    passing = [s for s in usable if s["specificity"] >= t.claim_specificity and beyond(s, "drop")
               and beyond(s, "specificity") and s.get("verdict") == LOCALISED]
    verdicts: dict[str, int] = {}
    for s in eligible:
        verdicts[str(s.get("verdict"))] = verdicts.get(str(s.get("verdict")), 0) + 1
    stat = (f"{len(passing)} of {len(eligible)} settings x groups (k <= {t.claim_max_k}) have specificity >= "
            f"{t.claim_specificity:.2f}, drop and specificity beyond the random control (p <= {t.control_p:g}) and "
            f"the verdict {LOCALISED!r}")
    if passing:
        top = max(passing, key=lambda s: s["specificity"])
        stat += f"; strongest: {_row(top)}"
    else:
        top = max(eligible, key=lambda s: s["specificity"])
        stat += f"; none supports it (closest by specificity: {_row(top)})"
    return ClaimVerdict(name, SUPPORTED if passing else NOT_SUPPORTED, stat,
                        {"n_eligible": len(eligible), "n_passing": len(passing), "verdict_counts": verdicts,
                         "strongest" if passing else "closest": top})


def _row(s: dict[str, Any]) -> str:
    return (f"{s['setting']} group {s['group']}: drop {s['drop']:.3f}, specificity {s['specificity']:.3f}, "
            f"p {_fmt(s.get('specificity_p'))} of {s.get('control_n') or 0} random draws, verdict: {s.get('verdict')}")


def specificity_claim(matrices: dict[str, np.ndarray], minority_groups: Sequence[int],
                      thresholds: Thresholds | None = None, *, precondition: str | None = None) -> ClaimVerdict:
    """§5.2: units selected from a group's hardest examples hurt that group most.

    ``matrices`` maps a setting label to a G x G array of training-accuracy drops, row = group the
    units were selected from, column = group evaluated. For each minority g the diagonal must beat
    the largest other entry of its row by ``matrix_margin``; supported when that holds for every
    minority group in at least half of the matrices. ``precondition`` makes it not testable.
    """
    t = thresholds or Thresholds()
    name = SPECIFICITY_CLAIM
    if precondition:
        return ClaimVerdict(name, NOT_TESTABLE, precondition)
    if not matrices:
        return ClaimVerdict(name, NOT_TESTABLE, "no group-gradient matrix was run")
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
    return ClaimVerdict(name, SUPPORTED if supported else NOT_SUPPORTED, stat, {"settings": per_setting})


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"
