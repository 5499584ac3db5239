"""From a probe's tidy rows to its summary: statistics over repeats, the random control, the
group-by-group matrix, per-setting verdicts and the claims of docs/method.md §5.1-5.2.

Tables (all tidy, one row per setting x split x group unless said otherwise):

* ``summary``  mean, std and 95% t-interval of the accuracy drop over repeats, the range of the
  draws the verdicts compare with (``draws_lo``/``draws_hi``: the ``control_p`` and 1 - ``control_p``
  quantiles over repeats), mean accuracy and logit margin after, margin change, specificity
  (minority groups) and predicted-class histogram;
* ``control``  for every non-random unit-scorer setting and minority group: where its mean drop and
  mean specificity fall in the distribution of the ``random`` scorer with the same k, intervention,
  sigma and per-layer rule on the same split (percentile and exact one-sided p-value with the number
  of draws; no z-score, which is infinite against a zero-spread control);
* ``matrix``   ``group-gradient``/``group-contrast``: drop of group j (``group``) when the units were
  selected from group i (``selected_from``);
* ``verdicts`` one row per non-random setting x minority group: the label of
  :func:`~spurmem.probes.verdicts.classify` (every group's train and held-out accuracy and the
  held-out predicted-class histograms enter it) and the numbers behind it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from spurmem.data.schema import GroupDataset
from spurmem.probes.verdicts import (
    LABELS, ClaimVerdict, GroupChange, Thresholds, classify, control_position, fit_precondition, prediction_shift,
    sensitivity_claim, specificity_claim,
)
from spurmem.record import json_text

SETTING_COLUMNS = ["setting", "scorer", "k", "fraction", "intervention", "sigma", "score_split", "selected_from",
                   "per_layer", "normalise"]
CONTROL_KEY = ["k", "intervention", "sigma", "per_layer", "split", "group"]
MATRIX_SCORERS = ("group-gradient", "group-contrast")


@dataclass
class ProbeSummary:
    before: pd.DataFrame
    summary: pd.DataFrame
    control: pd.DataFrame
    matrix: pd.DataFrame
    verdicts: pd.DataFrame
    claims: list[ClaimVerdict] = field(default_factory=list)
    n_settings: int = 0
    compute_seconds: float = 0.0  # edit + evaluation time summed over settings (resumed ones included)


def _ci95(std: float, n: int) -> float:
    if n < 2 or not np.isfinite(std):
        return float("nan")
    return float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n))


def _key(values) -> tuple:
    """A hashable key where None and NaN compare equal (CSV round trips turn one into the other)."""
    out = []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(None)
        elif isinstance(v, (np.integer, np.floating)):
            out.append(float(v))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(float(v))
        else:
            out.append(v)
    return tuple(out)


def summarise(rows: pd.DataFrame, dataset: GroupDataset, config) -> ProbeSummary:
    t: Thresholds = config.thresholds
    if rows.empty:
        empty = pd.DataFrame()
        return ProbeSummary(empty, empty, empty, empty, empty, [])
    pred_cols = [c for c in rows.columns if c.startswith("pred_after_")]
    first = rows.drop_duplicates(["split", "group"])
    before = first[["split", "group", "group_name", "minority", "count", "acc_before", "margin_before"]
                   + [c for c in rows.columns if c.startswith("pred_before_")]].reset_index(drop=True)

    out = []
    for (label, split, group), g in rows.groupby(["setting", "split", "group"], sort=False):
        n = g["repeat"].nunique()
        d_std = float(g["drop"].std(ddof=1)) if n > 1 else float("nan")
        s_std = float(g["specificity"].std(ddof=1)) if n > 1 else float("nan")
        row = {c: g[c].iloc[0] for c in SETTING_COLUMNS}
        row.update({
            "split": split, "group": group, "group_name": g["group_name"].iloc[0], "minority": g["minority"].iloc[0],
            "majority_of_class": g["majority_of_class"].iloc[0], "count": g["count"].iloc[0], "n_repeats": n,
            "acc_before": g["acc_before"].iloc[0], "acc_after": g["acc_after"].mean(),
            "drop_mean": g["drop"].mean(), "drop_std": d_std, "drop_ci95": _ci95(d_std, n),
            "draws_lo": float(g["drop"].quantile(t.control_p)), "draws_hi": float(g["drop"].quantile(1 - t.control_p)),
            "margin_before": g["margin_before"].iloc[0], "margin_after": g["margin_after"].mean(),
            "margin_change": g["margin_change"].mean(),
            "specificity_mean": g["specificity"].mean(), "specificity_std": s_std,
            "specificity_ci95": _ci95(s_std, n),
            **{c: g[c].mean() for c in pred_cols},
        })
        out.append(row)
    summary = pd.DataFrame(out)
    control = _control(rows, summary)
    matrix = summary[summary["scorer"].isin(MATRIX_SCORERS)][
        ["scorer", "k", "intervention", "sigma", "per_layer", "normalise", "score_split", "split",
         "selected_from", "group", "drop_mean", "margin_change"]].reset_index(drop=True)
    verdicts = _verdicts(summary, control, before, dataset, config)
    claims = _claims(control, matrix, verdicts, dataset, t, _fit(before, dataset, config.heldout_split))
    per_setting = rows.drop_duplicates("setting_id")
    seconds = float(per_setting["seconds"].sum()) if "seconds" in per_setting else float("nan")
    return ProbeSummary(before, summary, control, matrix, verdicts, claims, len(per_setting), seconds)


def _control(rows: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    random_rows = rows[rows["scorer"] == "random"]
    draws: dict[tuple, tuple[list, list]] = {}
    for key, g in random_rows.groupby(CONTROL_KEY, sort=False, dropna=False):
        draws[_key(key)] = (g["drop"].tolist(), g["specificity"].tolist())
    out = []
    cand = summary[(summary["scorer"] != "random") & summary["minority"].astype(bool) & summary["k"].notna()]
    for _, r in cand.iterrows():
        drops, specs = draws.get(_key([r[c] for c in CONTROL_KEY]), ([], []))
        pd_, ps = control_position(r["drop_mean"], drops), control_position(r["specificity_mean"], specs)
        out.append({
            "setting": r["setting"], "scorer": r["scorer"], "k": r["k"], "intervention": r["intervention"],
            "sigma": r["sigma"], "per_layer": r["per_layer"], "selected_from": r["selected_from"],
            "split": r["split"], "group": r["group"], "group_name": r["group_name"],
            "drop": r["drop_mean"], "specificity": r["specificity_mean"], "control_n": len(drops),
            "control_drop_mean": pd_.mean if pd_ else np.nan, "control_drop_std": pd_.std if pd_ else np.nan,
            "drop_percentile": pd_.percentile if pd_ else np.nan, "drop_p": pd_.p_value if pd_ else np.nan,
            "control_specificity_mean": ps.mean if ps else np.nan,
            "specificity_percentile": ps.percentile if ps else np.nan, "specificity_p": ps.p_value if ps else np.nan,
        })
    return pd.DataFrame(out)


def _fit(before: pd.DataFrame, dataset: GroupDataset, heldout: str) -> dict[str, tuple[float, float]]:
    """Per minority group, (train, held-out) accuracy of the unedited model."""
    acc = {(r.split, int(r.group)): r.acc_before for r in before.itertuples()}
    return {dataset.group_names[g]: (acc[("train", g)], acc[(heldout, g)]) for g in dataset.minority_groups
            if ("train", g) in acc and (heldout, g) in acc}


def _verdicts(summary: pd.DataFrame, control: pd.DataFrame, before: pd.DataFrame, dataset: GroupDataset,
              config) -> pd.DataFrame:
    t: Thresholds = config.thresholds
    heldout = config.heldout_split
    index = {(r["setting"], r["split"], int(r["group"])): r for _, r in summary.iterrows()}
    ctrl = {(r["setting"], r["split"], int(r["group"])): r for _, r in control.iterrows()} if len(control) else {}
    n_classes = len(dataset.class_names)
    hist_before = {int(r["group"]): [r.get(f"pred_before_{c}", np.nan) for c in range(n_classes)]
                   for _, r in before[before["split"] == heldout].iterrows()}
    out = []
    for label in summary.loc[summary["scorer"] != "random", "setting"].unique():
        def acc(split, h, column):
            r = index.get((label, split, h))
            return float(r[column]) if r is not None else float("nan")

        histograms = {dataset.group_names[h]: (hist_before[h], [index[(label, heldout, h)].get(f"pred_after_{c}", np.nan)
                                                               for c in range(n_classes)])
                      for h in range(dataset.n_groups) if h in hist_before and (label, heldout, h) in index}
        shift = prediction_shift(histograms, dataset.class_names, t)
        for g in dataset.minority_groups:
            tr = index.get((label, "train", g))
            ho = index.get((label, heldout, g))
            mj = index.get((label, "train", dataset.same_class_majority(g)))
            if tr is None or ho is None or mj is None:
                continue
            others = [GroupChange(dataset.group_names[h], acc("train", h, "acc_before"), acc("train", h, "acc_after"),
                                  acc(heldout, h, "acc_before"), acc(heldout, h, "acc_after"))
                      for h in range(dataset.n_groups) if h != g]
            c = ctrl.get((label, "train", g))
            beyond, note = None, "no random control to compare"
            if c is not None and c["control_n"] > 0:
                if c["control_n"] < t.min_control_draws:
                    note = (f"the random control has {int(c['control_n'])} draw(s); {t.min_control_draws} are needed "
                            f"for p <= {t.control_p:g}")
                else:
                    beyond = bool(c["drop_p"] <= t.control_p + 1e-12)
            v = classify(tr["acc_before"], tr["acc_after"], ho["acc_before"], ho["acc_after"],
                         mj["acc_before"], mj["acc_after"], others=others, shift=shift, beyond_control=beyond,
                         control_note=note, thresholds=t, margin_change=tr["margin_change"],
                         majority_margin_change=mj["margin_change"])
            out.append({
                "setting": label, "scorer": tr["scorer"], "selected_from": tr["selected_from"], "group": g,
                "group_name": dataset.group_names[g], "verdict": v.label, "reason": v.reason,
                **{k: v.statistics[k] for k in ("train_before", "train_after", "train_share", "heldout_before",
                                                "heldout_after", "heldout_share", "majority_share", "specificity",
                                                "worst_other", "worst_other_drop", "shift_class",
                                                "margin_change", "majority_margin_change", "beyond_control")},
                "heldout_split": heldout,
                "drop_p": c["drop_p"] if c is not None else np.nan,
                "control_n": int(c["control_n"]) if c is not None else 0,
            })
    return pd.DataFrame(out)


def _claims(control: pd.DataFrame, matrix: pd.DataFrame, verdicts: pd.DataFrame, dataset: GroupDataset,
            t: Thresholds, fit: dict[str, tuple[float, float]]) -> list[ClaimVerdict]:
    labels = ({(r.setting, int(r.group)): r.verdict for r in verdicts.itertuples()} if len(verdicts) else {})
    entries = []
    if len(control):
        for _, r in control[control["split"] == "train"].iterrows():
            sel = r["selected_from"]
            if sel is not None and not (isinstance(sel, float) and math.isnan(sel)) and int(sel) != int(r["group"]):
                continue  # per-group scorers are judged on the group they were aimed at
            entries.append({
                "setting": r["setting"], "group": int(r["group"]), "k": int(r["k"]), "drop": r["drop"],
                "specificity": r["specificity"], "drop_p": _none(r["drop_p"]),
                "specificity_p": _none(r["specificity_p"]), "control_n": int(r["control_n"]),
                "verdict": labels.get((r["setting"], int(r["group"]))),
            })
    matrices = {}
    gg = matrix[(matrix["scorer"] == "group-gradient") & (matrix["split"] == "train")] if len(matrix) else matrix
    if len(gg):
        keys = ["k", "intervention", "sigma", "per_layer", "normalise", "score_split"]
        for key, m in gg.groupby(keys, dropna=False, sort=False):
            arr = np.full((dataset.n_groups, dataset.n_groups), np.nan)
            for _, r in m.iterrows():
                arr[int(r["selected_from"]), int(r["group"])] = r["drop_mean"]
            label = " ".join(f"{k}={v}" for k, v in zip(keys, key) if not (isinstance(v, float) and math.isnan(v)))
            matrices[label] = arr
    pre = fit_precondition(fit, t)
    return [sensitivity_claim(entries, t, precondition=pre),
            specificity_claim(matrices, dataset.minority_groups, t, precondition=pre)]


def _none(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def write_summary(out: Path, s: ProbeSummary, config, *, rows: pd.DataFrame, skipped: list[str], seconds: float,
                  n_computed: int, n_resumed: int) -> None:
    """``rows.csv``, ``summary.csv``, ``control.csv``, ``matrix.csv``, ``verdicts.csv``,
    ``verdicts.json`` and a readable ``summary.md``, written as one set (``probe.manifest.json``
    last, see ``spurmem.fileset``) so a reader never mixes two grids' files."""
    from spurmem.fileset import write_set

    files = {"rows.csv": rows.to_csv(index=False)}
    for name, table in (("before", s.before), ("summary", s.summary), ("control", s.control),
                        ("matrix", s.matrix), ("verdicts", s.verdicts)):
        files[f"{name}.csv"] = table.to_csv(index=False)
    counts = s.verdicts["verdict"].value_counts().to_dict() if len(s.verdicts) else {}
    files["verdicts.json"] = json_text(_json_safe({
        "claims": [c.to_dict() for c in s.claims],
        "setting_verdict_counts": {label: int(counts.get(label, 0)) for label in LABELS},
        "thresholds": config.thresholds.model_dump(), "heldout_split": config.heldout_split,
        "seconds": seconds, "compute_seconds": s.compute_seconds, "settings_computed": n_computed,
        "settings_resumed": n_resumed, "skipped": skipped,
    }))
    files["summary.md"] = markdown(s, config, seconds=seconds, skipped=skipped)
    write_set(out, "probe", files)


def _json_safe(obj):
    """Strict JSON: infinite or undefined numbers become the strings "inf", "-inf" and "nan"."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)) and not math.isfinite(obj):
        return str(float(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def markdown(s: ProbeSummary, config, *, seconds: float | None = None, skipped: list[str] = ()) -> str:
    """A readable report of the probe (the CSV files hold every number)."""
    lines = [f"# Probe `{config.name}`", ""]
    if seconds is not None:
        lines += [f"{s.n_settings} settings; edit + evaluation time summed over settings: {s.compute_seconds:.1f} s "
                  f"(this call: {seconds:.1f} s). Held-out split for verdicts: `{config.heldout_split}`. Drops are "
                  f"accuracy before minus after (positive = worse); random repeats: {config.repeats}.", ""]
    lines += ["## Claims", ""]
    for c in s.claims:
        lines.append(f"- **{c.claim}: {c.status}** — {c.statistic}")
    lines += ["", "## Before the edit", ""]
    if len(s.before):
        lines.append(_md_table(s.before[["split", "group", "group_name", "count", "acc_before", "margin_before"]]))
    if len(s.verdicts):
        lines += ["", "## Verdicts per setting and minority group (train vs held-out)", ""]
        lines.append(outcome_counts(s.verdicts))
        lines.append("")
        cols = ["setting", "group_name", "verdict", "train_share", "heldout_share", "majority_share",
                "worst_other", "worst_other_drop", "shift_class", "margin_change", "drop_p", "control_n"]
        lines.append(_md_table(s.verdicts[cols]))
    if len(s.matrix):
        lines += ["", "## Group-by-group matrix (train drop; row: selected from, column: evaluated)", ""]
        m = s.matrix[s.matrix["split"] == "train"]
        for key, block in m.groupby(["scorer", "k", "intervention", "sigma", "per_layer", "normalise"], dropna=False,
                                    sort=False):
            scorer, k, intervention, sigma, per_layer, normalise = key
            title = f"{scorer} k={int(k)} {intervention}" + ("" if _none(sigma) is None else f" sigma={sigma:g}")
            title += (" per-layer" if per_layer else "") + (" normalised" if normalise else "")
            pivot = block.assign(selected_from=block["selected_from"].astype(int), group=block["group"].astype(int))
            pivot = pivot.pivot_table(index="selected_from", columns="group", values="drop_mean")
            pivot.columns = [f"g{c}" for c in pivot.columns]
            pivot.index = [f"from g{i}" for i in pivot.index]
            lines += [f"`{title}`", "", _md_table(pivot.reset_index(names="units")), ""]
    if skipped:
        lines += ["", "Skipped combinations: " + "; ".join(skipped)]
    return "\n".join(lines) + "\n"


def outcome_counts(verdicts: pd.DataFrame) -> str:
    """Every outcome label with its count (zeros included, in the order of ``LABELS``)."""
    counts = verdicts["verdict"].value_counts().to_dict() if len(verdicts) else {}
    return ", ".join(f"{label}: {int(counts.get(label, 0))}" for label in LABELS)


def _md_table(df: pd.DataFrame) -> str:
    def fmt(v):
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else f"{v:.3f}"
        return str(v)

    cols = [str(c) for c in df.columns]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(out)
