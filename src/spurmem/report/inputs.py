"""Readers turning each stage's output files into the tidy tables the figures take.

One function per kind of input; each returns an empty frame (never a guess) when its files are
absent, and raises :class:`~spurmem.report.runs.RunDirError` naming the file when one is malformed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from spurmem.report.runs import RUN_PARTS, Run, RunDirError, selected_groups


def majority_groups(run: Run, train_rows: pd.DataFrame) -> set[int]:
    """The majority group of each class, from the run's record when it has one, else from the training
    counts and the ``class/attribute`` group names (the schema's naming)."""
    for source in (run.info, run.info.get("dataset_info") or {}):
        if source.get("majority_groups") is not None:
            return {int(g) for g in source["majority_groups"]}
    rows = train_rows.assign(cls=train_rows["group_name"].astype(str).str.rsplit("/", n=1).str[0])
    return {int(part.loc[part["count"].idxmax(), "group"]) for _, part in rows.groupby("cls")}


def memorization_gaps(run: Run, heldout: str = "test") -> pd.DataFrame:
    """Per group at the selected epoch: train accuracy, held-out accuracy, their gap and the group's role."""
    cols = ["run", "algorithm", "seed", "epoch", "group", "group_name", "role", "train_accuracy",
            f"{heldout}_accuracy", "gap", "train_count"]
    rows = selected_groups(run)
    train = rows[rows["split"] == "train"].set_index("group")
    held = rows[rows["split"] == heldout].set_index("group")
    if train.empty or held.empty:
        return pd.DataFrame(columns=cols)
    majority = majority_groups(run, train.reset_index())
    out = []
    for g, tr in train.iterrows():
        if g not in held.index:
            continue
        out.append({
            "run": run.name, "algorithm": run.algorithm, "seed": run.seed, "epoch": run.selected_epoch,
            "group": int(g), "group_name": tr["group_name"],
            "role": "majority" if g in majority else "minority",
            "train_accuracy": tr["accuracy"], f"{heldout}_accuracy": held.loc[g, "accuracy"],
            "gap": tr["accuracy"] - held.loc[g, "accuracy"], "train_count": tr["count"],
        })
    return pd.DataFrame(out, columns=cols)


COMPARISON_FILE = "comparison.json"
METRIC_LABELS = {
    "test/worst_group_accuracy": "test WGA",
    "test/adjusted_average": "test adjusted avg",
    "test/average": "test avg",
}


@dataclass
class Comparison:
    """A ``spurmem compare`` output folder: the per-algorithm summary and the per-run metrics."""

    path: Path
    summary: pd.DataFrame  # algorithm, metric, n_seeds, mean, std
    per_run: pd.DataFrame  # algorithm, seed, run_dir, selected_epoch, test/..., gap_g*
    selection_rule: str
    seeds: list[int]


def find_comparisons(paths: list[str | Path]) -> list[Comparison]:
    """Every comparison (a folder with comparison.json) at or below ``paths``, sorted by path."""
    found: set[Path] = set()
    for root in map(Path, paths):
        if (root / COMPARISON_FILE).is_file():
            found.add(root)
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in RUN_PARTS]
            if COMPARISON_FILE in filenames:
                found.add(Path(dirpath))
    return [read_comparison(p) for p in sorted(found)]


def read_comparison(folder: str | Path) -> Comparison:
    path = Path(folder) / COMPARISON_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{path}: not valid JSON ({exc})") from exc
    for key in ("summary", "runs"):
        if key not in data:
            raise RunDirError(f"{path}: no {key!r} entry; expected the output of `spurmem compare`")
    summary = pd.DataFrame(data["summary"], columns=["algorithm", "metric", "n_seeds", "mean", "std"])
    per_run = pd.DataFrame(data["runs"]).drop(columns=["terms"], errors="ignore")
    seeds = sorted({int(s) for s in per_run.get("seed", [])})
    return Comparison(Path(folder), summary, per_run, str(data.get("selection_rule", "not stated")), seeds)
