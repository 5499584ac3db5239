"""Unit-level memorisation (docs/method.md §5.3): is the memorisation held by a few units?

For every candidate unit u, zeroed alone (the scan engine evaluates all of them):

* ``train_drop``   drop in the pooled minority groups' *training* accuracy,
* ``heldout_drop`` the same on held-out data (test by default, or val),
* ``score``        train_drop - heldout_drop: the part of u's effect that is specific to the
  examples the model was trained on; per minority group as well.

Concentration: the share of the total positive score held by the top 1% and top 10% of units and
the cumulative-share curve (negative scores, where a unit matters more on held-out data, count as 0
in the total: a share of "memorisation mass"). Two references say what "concentrated" means here:

* *uniform*: every unit holding the same score (top p% hold p%);
* *sign-flip null*: each unit's score multiplied by a random sign (R draws). Under the hypothesis
  that a unit's training and held-out effects are exchangeable (no memorisation, only noisy unit
  effects), the scores are symmetric around 0, and their heavy tail alone yields some concentration;
  the observed shares are compared with the null's distribution (mean, 95% interval, p-value).

The summary says plainly whether memorisation is concentrated beyond both references.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
from torch import nn

from spurmem.data.schema import GroupDataset
from spurmem.probes.scan import ScanEngine, ScanResult, Screen
from spurmem.probes.units import Unit, enumerate_units, match_layers
from spurmem.progress import Progress, human

TOP_FRACTIONS = (0.01, 0.10)


@dataclass
class UnitMemorization:
    """Scores per unit, the concentration statistics and the null reference."""

    ranked: pd.DataFrame          # one row per unit, best score first
    groups: pd.DataFrame          # tidy: unit x group (train/held-out accuracy after, drops, score)
    curve: pd.DataFrame           # rank, fraction of units, cumulative share (observed, null mean/lo/hi, uniform)
    layers: pd.DataFrame          # per layer: units, total score, share, uniform share
    summary: dict[str, Any] = field(default_factory=dict)


def unit_memorization(
    model: nn.Module,
    dataset: GroupDataset,
    *,
    heldout: str = "test",
    intervention: str = "zero",
    units: Sequence[Unit | str] | None = None,
    layers: Sequence[str] | None = None,
    examples_per_group: int | None = None,
    null_draws: int = 1000,
    seed: int = 0,
    device: str = "auto",
    batch_size: int = 256,
    progress: bool = False,
    screen: Screen | None = None,
    **params: Any,
) -> UnitMemorization:
    """Scan every unit on the training and held-out splits and summarise how concentrated the
    unit-level memorisation score is (see the module docstring). With ``screen`` the scans are
    screened (:mod:`spurmem.probes.scan_screen`): only the pairs the first-order screen cannot clear
    run exactly, and the summary says how many did and what the audit found.

    Limits, recorded in ``summary["limits"]``: ``layers`` (names or glob patterns) keeps the units
    of the matching layers; ``examples_per_group`` scans at most that many examples of each group
    of each split (a random sample drawn with ``seed``; groups with fewer keep all). A limited
    result describes the units and examples scanned, not the whole model and splits."""
    if heldout not in dataset.splits or heldout == "train":
        raise ValueError(f"held-out split {heldout!r} must be a non-train split of {dataset.name!r} "
                         f"({sorted(dataset.splits)})")
    if examples_per_group is not None and examples_per_group < 1:
        raise ValueError(f"examples_per_group must be >= 1, got {examples_per_group}")
    engine = ScanEngine(model, dataset, batch_size=batch_size, device=device)
    units = [u if isinstance(u, Unit) else Unit.parse(u)
             for u in (units if units is not None else enumerate_units(engine.model))]
    n_all = len(units)
    if layers:
        keep = set(match_layers(dict.fromkeys(u.layer for u in units), layers))
        units = [u for u in units if u.layer in keep]
    other = next((s for s in ("val", "test") if s in dataset.splits and s != heldout), None)
    splits = ["train", heldout] + ([other] if other else [])
    indices = {split: None if examples_per_group is None else
               sample_per_group(dataset[split].group.numpy(), examples_per_group, seed=[seed, i])
               for i, split in enumerate(splits)}
    sizes = {split: len(dataset[split]) if indices[split] is None else len(indices[split]) for split in splits}
    n_layers = len(dict.fromkeys(u.layer for u in units))
    pairs = len(units) * sum(sizes.values())
    cost = (f"{len(units):,} units in {n_layers} layers x ("
            + " + ".join(f"{n:,} {split}" for split, n in sizes.items())
            + f") examples = {human(pairs)} unit-example pairs" + (", screened" if screen is not None else ""))
    scans = {}
    with Progress("memorization units", len(splits), unit="scans", enabled=progress, cost=cost) as jobs:
        for split in splits:
            jobs.advance(0, info=f"scanning {split}")
            scans[split] = engine.scan(units, intervention, split, indices=indices[split], progress=progress,
                                       screen=screen, **params)
            jobs.advance(1, info=f"{split} scanned")
    result = summarize_scans(scans["train"], scans[heldout], dataset, null_draws=null_draws, seed=seed,
                             second_heldout=scans.get(other))
    result.summary["limits"] = {
        "limited": bool(layers) or examples_per_group is not None,
        "layers": list(layers) if layers else None, "layers_scanned": n_layers,
        "units_scanned": len(units), "units_candidate": n_all,
        "examples_per_group": examples_per_group, "sample_seed": seed,
        "examples_scanned": sizes, "examples_in_split": {split: len(dataset[split]) for split in splits},
        "example_indices": {split: ix.tolist() for split, ix in indices.items() if ix is not None},
    }
    if result.summary["limits"]["limited"]:
        result.summary["limits"]["statement"] = limits_statement(result.summary["limits"])
    result.summary["statement"] = _statement(result.summary)
    return result


def sample_per_group(groups: np.ndarray, per_group: int, seed: Any = 0) -> np.ndarray:
    """Sorted positions of at most ``per_group`` random examples of each group (all of a smaller
    group), drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    picked = [rng.choice(where, min(per_group, len(where)), replace=False)
              for g in np.unique(groups) for where in [np.flatnonzero(groups == g)]]
    return np.sort(np.concatenate(picked)) if picked else np.array([], dtype=int)


def _pooled(res: ScanResult, groups: list[int]) -> tuple[np.ndarray, float]:
    n = res.count[groups].sum()
    return res.correct[:, groups].sum(axis=1) / n, res.base_correct[groups].sum() / n


def summarize_scans(train: ScanResult, held: ScanResult, dataset: GroupDataset, *, null_draws: int = 1000,
                    seed: int = 0, second_heldout: ScanResult | None = None) -> UnitMemorization:
    """The memorisation report from a training-split scan and a held-out scan of the same units.

    With ``second_heldout`` (a scan of another held-out split), every unit also gets a *held-out vs
    held-out* score (drop on that split minus drop on the held-out split): the same statistic where
    no example was trained on. Its 95th percentile over units is the control that a unit's score
    must exceed to count as beyond it in the per-unit verdicts."""
    if train.labels != held.labels:
        raise ValueError("the two scans must cover the same units in the same order")
    minority = dataset.minority_groups
    acc_t, base_t = _pooled(train, minority)
    acc_h, base_h = _pooled(held, minority)
    train_drop, held_drop = base_t - acc_t, base_h - acc_h
    score = train_drop - held_drop
    ranked = pd.DataFrame({
        "unit": train.labels, "layer": train.layers,
        "index": [int(label.rpartition(":")[2]) for label in train.labels],
        "score": score, "train_drop": train_drop, "heldout_drop": held_drop,
        "train_acc_after": acc_t, "heldout_acc_after": acc_h,
    })
    for g in minority:
        ranked[f"score_g{g}"] = train.drop[:, g] - held.drop[:, g]
    control = None
    if second_heldout is not None:
        acc_2, base_2 = _pooled(second_heldout, minority)
        ranked["heldout_vs_heldout_score"] = (base_2 - acc_2) - held_drop
        control = float(np.percentile(np.abs(ranked.heldout_vs_heldout_score), 95))
    _unit_verdicts(ranked, train, held, dataset, control)
    ranked = ranked.sort_values(["score", "train_drop"], ascending=False, kind="stable").reset_index(drop=True)
    ranked.insert(0, "rank", np.arange(1, len(ranked) + 1))

    rows = []
    for i, label in enumerate(train.labels):
        for g, name in enumerate(dataset.group_names):
            rows.append({"unit": label, "layer": train.layers[i], "group": g, "group_name": name,
                         "minority": g in minority, "train_before": train.base_accuracy[g],
                         "train_after": train.accuracy[i, g], "heldout_before": held.base_accuracy[g],
                         "heldout_after": held.accuracy[i, g], "train_drop": train.drop[i, g],
                         "heldout_drop": held.drop[i, g], "score": train.drop[i, g] - held.drop[i, g],
                         "train_margin_after": train.mean_margin[i, g], "heldout_margin_after": held.mean_margin[i, g]})
    groups = pd.DataFrame(rows)

    curve, shares, null = concentration(score, null_draws=null_draws, seed=seed)
    layers = _layer_totals(ranked, list(dict.fromkeys(train.layers)))
    positive = float(np.clip(score, 0, None).sum())
    summary = {
        "units": len(score), "minority_groups": minority, "heldout_split": held.split,
        "intervention": train.intervention, "params": train.params,
        "base_minority_train_acc": float(base_t), "base_minority_heldout_acc": float(base_h),
        "base_minority_gap": float(base_t - base_h),
        "total_positive_score": positive, "total_score": float(score.sum()),
        "units_with_positive_score": int((score > 0).sum()), "units_with_any_effect":
            int(((train_drop != 0) | (held_drop != 0)).sum()),
        "top_shares": shares, "null": null, "null_draws": null_draws, "seed": seed,
        "score_definition": "drop in pooled minority-group train accuracy minus drop in held-out accuracy, "
                            "unit zeroed alone; shares are of the total positive score",
    }
    top = ranked.head(max(1, int(np.ceil(0.10 * len(ranked)))))
    summary["top_10pct_verdicts"] = top.verdict.value_counts().to_dict()
    if second_heldout is not None:
        null_score = ranked.heldout_vs_heldout_score.to_numpy()
        summary["heldout_vs_heldout"] = {
            "split": second_heldout.split, "control_95pct_abs_score": control,
            "total_positive_score": float(np.clip(null_score, 0, None).sum()),
            "units_beyond_control": int((ranked.score > control).sum()),
            "meaning": "drop on one held-out split minus drop on the other: the score where nothing was "
                       "trained on; a unit's score counts as beyond control above its 95th percentile (abs)",
        }
    scans = [r for r in (train, held, second_heldout) if r is not None]
    summary["scan"] = {r.split: {"engine": r.engine, "seconds": r.seconds} for r in scans}
    if any(r.screen is not None for r in scans):
        summary["screen"] = {r.split: r.screen.to_dict() for r in scans if r.screen is not None}
    from spurmem.probes.verdicts import fit_precondition

    summary["precondition"] = fit_precondition(
        {dataset.group_names[g]: (float(train.base_accuracy[g]), float(held.base_accuracy[g])) for g in minority})
    summary["statement"] = _statement(summary)
    return UnitMemorization(ranked=ranked, groups=groups, curve=curve, layers=layers, summary=summary)


def _unit_verdicts(ranked: pd.DataFrame, train: ScanResult, held: ScanResult, dataset: GroupDataset,
                   control: float | None) -> None:
    """Per unit, the verdict (``probes.verdicts.classify``, the probes' rule) for the minority group it
    hurts most on the training split, with every other group's train and held-out accuracy; the
    pooled score alone cannot tell class collapse or broad disruption from memorisation."""
    from spurmem.probes.verdicts import GroupChange, classify

    minority = dataset.minority_groups
    labels, groups, majority_drops, shares = [], [], [], []
    for i in range(len(ranked)):
        g = max(minority, key=lambda m: train.drop[i, m])
        maj = dataset.same_class_majority(g)
        beyond = None if control is None else bool(train.drop[i, g] - held.drop[i, g] > control)
        others = [GroupChange(dataset.group_names[h], train.base_accuracy[h], train.accuracy[i, h],
                              held.base_accuracy[h], held.accuracy[i, h]) for h in range(dataset.n_groups) if h != g]
        v = classify(train.base_accuracy[g], train.accuracy[i, g], held.base_accuracy[g], held.accuracy[i, g],
                     train.base_accuracy[maj], train.accuracy[i, maj], others=others, beyond_control=beyond)
        labels.append(v.label)
        groups.append(g)
        majority_drops.append(train.drop[i, maj])
        shares.append((v.statistics["train_share"], v.statistics["heldout_share"]))
    ranked["verdict"] = labels
    ranked["verdict_group"] = groups
    ranked["majority_train_drop"] = majority_drops
    ranked["train_share_lost"] = [a for a, _ in shares]
    ranked["heldout_share_lost"] = [b for _, b in shares]


def top_share(score: np.ndarray, fraction: float) -> float:
    """Share of the total positive score held by the top ``fraction`` of units (at least one unit)."""
    s = np.sort(np.clip(score, 0, None))[::-1]
    total = s.sum()
    if total <= 0:
        return float("nan")
    k = max(1, int(np.ceil(fraction * len(s))))
    return float(s[:k].sum() / total)


def concentration(score: np.ndarray, *, null_draws: int = 1000, seed: int = 0):
    """Cumulative-share curve and top-1%/10% shares, observed and under the sign-flip null."""
    n = len(score)
    rng = np.random.default_rng(seed)
    obs_curve = _cumulative(score)
    null_curves = np.empty((null_draws, n))
    null_shares = {f: np.empty(null_draws) for f in TOP_FRACTIONS}
    for r in range(null_draws):
        flipped = score * rng.choice((-1.0, 1.0), size=n)
        null_curves[r] = _cumulative(flipped)
        for f in TOP_FRACTIONS:
            null_shares[f][r] = top_share(flipped, f)
    frac = np.arange(1, n + 1) / n
    with warnings.catch_warnings():  # draws without positive mass are NaN by design
        warnings.simplefilter("ignore", RuntimeWarning)
        null_mean = np.nanmean(null_curves, axis=0) if null_draws else np.nan
        null_lo = np.nanpercentile(null_curves, 2.5, axis=0) if null_draws else np.nan
        null_hi = np.nanpercentile(null_curves, 97.5, axis=0) if null_draws else np.nan
    curve = pd.DataFrame({
        "rank": np.arange(1, n + 1), "fraction_of_units": frac, "cumulative_share": obs_curve,
        "null_mean": null_mean, "null_lo": null_lo, "null_hi": null_hi,
        "uniform": frac,
    })
    shares, null = {}, {}
    for f in TOP_FRACTIONS:
        key = f"top_{int(round(f * 100))}pct"
        observed = top_share(score, f)
        draws = null_shares[f][~np.isnan(null_shares[f])] if null_draws else np.array([])
        shares[key] = observed
        null[key] = {
            "uniform": max(1, int(np.ceil(f * n))) / n,
            "null_mean": float(draws.mean()) if len(draws) else float("nan"),
            "null_lo": float(np.percentile(draws, 2.5)) if len(draws) else float("nan"),
            "null_hi": float(np.percentile(draws, 97.5)) if len(draws) else float("nan"),
            "p_value": float((1 + (draws >= observed).sum()) / (1 + len(draws))) if len(draws) and not np.isnan(observed)
            else float("nan"),
        }
    return curve, shares, null


def _cumulative(score: np.ndarray) -> np.ndarray:
    s = np.sort(np.clip(score, 0, None))[::-1]
    total = s.sum()
    return np.cumsum(s) / total if total > 0 else np.full(len(s), np.nan)


def _layer_totals(ranked: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    positive = ranked.score.clip(lower=0)
    total = positive.sum()
    rows = []
    for layer in order:
        mask = ranked.layer == layer
        rows.append({"layer": layer, "units": int(mask.sum()), "total_score": float(ranked.score[mask].sum()),
                     "positive_score": float(positive[mask].sum()),
                     "share": float(positive[mask].sum() / total) if total > 0 else float("nan"),
                     "uniform_share": float(mask.sum() / len(ranked)),
                     "max_score": float(ranked.score[mask].max()), "mean_train_drop": float(ranked.train_drop[mask].mean()),
                     "mean_heldout_drop": float(ranked.heldout_drop[mask].mean())})
    return pd.DataFrame(rows)


def _statement(summary: dict[str, Any]) -> str:
    text = _concentration_statement(summary)
    limits = summary.get("limits") or {}
    return f"{text}; {limits['statement']}" if limits.get("statement") else text


def _concentration_statement(summary: dict[str, Any]) -> str:
    if summary.get("precondition"):
        return f"not testable: {summary['precondition']}"
    if summary["total_positive_score"] <= 0:
        return ("no unit has a positive memorisation score: zeroing any single unit costs held-out accuracy at "
                "least as much as training accuracy, so no memorisation is held by single units")
    parts = []
    concentrated = True
    for key in ("top_1pct", "top_10pct"):
        obs, ref = summary["top_shares"][key], summary["null"][key]
        beyond = obs > ref["null_hi"] and obs > 2 * ref["uniform"]
        concentrated &= beyond
        parts.append(f"{key.replace('_', ' ').replace('pct', '%')} of units hold {obs:.0%} of the positive score "
                     f"(uniform {ref['uniform']:.0%}, sign-flip null {ref['null_mean']:.0%} "
                     f"[{ref['null_lo']:.0%}, {ref['null_hi']:.0%}], p={ref['p_value']:.3f})")
    verdict = ("memorisation is concentrated in few units, beyond the random expectation" if concentrated
               else "memorisation is NOT concentrated beyond the random expectation")
    counts = summary.get("top_10pct_verdicts")
    if counts:
        parts.append("per-unit verdicts of the top 10%: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if summary.get("screen"):
        parts.append(_screen_statement(summary["screen"]))
    return f"{verdict}: " + "; ".join(parts)


def limits_statement(limits: dict[str, Any]) -> str:
    """What a limited scan covered (``summary["limits"]``), in one clause."""
    scanned = ", ".join(f"{n:,} of {limits['examples_in_split'][s]:,} {s}" for s, n in limits["examples_scanned"].items())
    layers = f" (layers {', '.join(limits['layers'])})" if limits.get("layers") else ""
    per_group = limits.get("examples_per_group")
    return (f"LIMITED scan: {limits['units_scanned']:,} of {limits['units_candidate']:,} candidate units in "
            f"{limits['layers_scanned']} layers{layers}, examples {scanned}"
            + (f" (at most {per_group} per group, seed {limits['sample_seed']})" if per_group else "")
            + "; the shares are of the units and examples scanned")


def _screen_statement(screen: dict[str, dict[str, Any]]) -> str:
    """One sentence on how much of a screened scan ran exactly and what its audit found."""
    pairs = sum(r["pairs"] for r in screen.values())
    exact = sum(r["exact_pairs"] for r in screen.values())
    missed = sum(r["audit_missed"] for r in screen.values())
    flips = sum(r["audit_flips"] for r in screen.values())
    cleared = sum(r["audit_cleared"] for r in screen.values())
    return (f"screened scan: {exact:,} of {pairs:,} unit-example pairs ran exactly ({exact / max(pairs, 1):.1%}), "
            f"the rest kept their prediction on a first-order screen; the audit's exact runs found "
            f"{missed} of {flips} prediction flips missed among {cleared:,} cleared pairs")
