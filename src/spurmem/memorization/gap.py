"""The group memorisation gap (docs/method.md §2): acc_g(train) - acc_g(held-out) for the same model.

Read from each run's ``metrics.jsonl`` at the chosen epoch (the rows the trainer wrote; a run whose
row lacks a split is evaluated from its checkpoint through ``load_run``). One run gives a 95%
interval per group for the difference of the two proportions by Newcombe's hybrid score method (his
method 10: Wilson intervals of each proportion combined; unlike the normal approximation it does not
shrink to zero width when an accuracy is 0 or 1, which trained models reach); several runs (seeds)
give the mean, standard deviation and a 95% t-interval over runs; when the runs' gaps are identical
(every run 100% train and 100% held-out, say) the t-interval would have zero width, so the interval
is then Newcombe's on the counts pooled over runs, and the summary says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats


@dataclass
class GapReport:
    """``runs``: one row per run x group; ``summary``: one row per group (over runs)."""

    runs: pd.DataFrame
    summary: pd.DataFrame
    heldout: str
    epoch: str
    info: dict[str, Any] = field(default_factory=dict)


def _group_rows(run_dir: Path, epoch, heldout: str) -> tuple[int, list[dict], list[dict], dict]:
    from spurmem.train import read_history, read_info, resolve_epoch

    chosen = resolve_epoch(run_dir, epoch)
    history = {row["epoch"]: row for row in read_history(run_dir)}
    groups = history.get(chosen, {}).get("groups", {})
    info = read_info(run_dir)
    if "train" in groups and heldout in groups:
        return chosen, groups["train"], groups[heldout], info
    from spurmem.metrics import evaluate
    from spurmem.train import load_run

    loaded = load_run(run_dir, epoch=chosen)
    results = evaluate(loaded.model, loaded.dataset, splits=("train", heldout), device="cpu")
    as_rows = {s: [{"group": g.group, "name": g.name, "correct": g.correct, "count": g.count,
                    "accuracy": g.accuracy, "mean_margin": g.mean_margin} for g in m.groups]
               for s, m in results.items()}
    return chosen, as_rows["train"], as_rows[heldout], info


def wilson_interval(p: float, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval of a proportion p observed on n examples."""
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * float(np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)))
    return centre - half, centre + half


def difference_interval(p1: float, n1: int, p2: float, n2: int, level: float = 0.95) -> tuple[float, float]:
    """Newcombe's (1998) hybrid score interval of p1 - p2 for two independent proportions."""
    if not (n1 and n2):
        return float("nan"), float("nan")
    z = float(stats.norm.ppf(0.5 + level / 2))
    (l1, u1), (l2, u2) = wilson_interval(p1, n1, z), wilson_interval(p2, n2, z)
    d = p1 - p2
    return d - float(np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)), d + float(np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))


def gap_report(run_dirs: Sequence[str | Path], *, heldout: str = "test", epoch: str | int = "selected",
               level: float = 0.95) -> GapReport:
    """The memorisation gap per group of each run and over runs."""
    if not run_dirs:
        raise ValueError("gap_report needs at least one run directory")
    rows = []
    names = None
    for run_dir in map(Path, run_dirs):
        if not run_dir.is_dir():
            raise FileNotFoundError(f"run directory {run_dir} does not exist")
        chosen, train, held, info = _group_rows(run_dir, epoch, heldout)
        these = [r["name"] for r in train]
        if names is not None and these != names:
            raise ValueError(f"{run_dir}: groups {these} differ from the first run's {names}")
        names = these
        for t, h in zip(train, held):
            p1, n1, p2, n2 = t["accuracy"], t["count"], h["accuracy"], h["count"]
            gap = p1 - p2
            gap_lo, gap_hi = difference_interval(p1, n1, p2, n2, level)
            rows.append({
                "run": str(run_dir), "seed": info.get("seed"), "algorithm": info.get("algorithm"), "epoch": chosen,
                "group": t["group"], "group_name": t["name"], "train_acc": p1, "train_count": n1,
                "heldout_acc": p2, "heldout_count": n2, "gap": gap, "gap_lo": gap_lo, "gap_hi": gap_hi,
                "train_margin": t.get("mean_margin"), "heldout_margin": h.get("mean_margin"),
            })
    runs = pd.DataFrame(rows)
    return GapReport(runs=runs, summary=summarise_gaps(runs, level), heldout=heldout, epoch=str(epoch),
                     info={"level": level, "runs": [str(r) for r in run_dirs]})


def summarise_gaps(runs: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """One row per group over the runs of ``runs`` (``gap_report``'s per-run table): mean gap, its
    standard deviation and its interval (the method is named in ``interval``)."""
    summary_rows = []
    for (g, name), part in runs.groupby(["group", "group_name"], sort=True):
        n = len(part)
        mean, sd = float(part.gap.mean()), float(part.gap.std(ddof=1)) if n > 1 else float("nan")
        if n > 1 and sd > 0:
            half = float(stats.t.ppf(0.5 + level / 2, n - 1) * sd / np.sqrt(n))
            lo, hi, how = mean - half, mean + half, f"t-interval over {n} runs"
        elif n > 1:
            n1, n2 = int(part.train_count.sum()), int(part.heldout_count.sum())
            c1 = float((part.train_acc * part.train_count).sum())
            c2 = float((part.heldout_acc * part.heldout_count).sum())
            lo, hi = difference_interval(c1 / n1, n1, c2 / n2, n2, level) if n1 and n2 else (float("nan"),) * 2
            how = f"Newcombe score on the counts pooled over {n} runs (identical gaps: a t-interval has zero width)"
        else:
            lo, hi, how = float(part.gap_lo.iloc[0]), float(part.gap_hi.iloc[0]), "Newcombe score (one run)"
        summary_rows.append({"group": g, "group_name": name, "runs": n, "train_acc": float(part.train_acc.mean()),
                             "heldout_acc": float(part.heldout_acc.mean()), "gap": mean, "gap_std": sd,
                             "gap_lo": lo, "gap_hi": hi, "interval": f"{level:.0%} {how}"})
    return pd.DataFrame(summary_rows)
