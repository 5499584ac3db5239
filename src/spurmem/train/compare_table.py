"""The comparison table: per-run metrics at the selected epoch, and mean +- std per algorithm.

Written as ``comparison.csv`` (tidy: one row per algorithm x metric), ``per_run.csv`` (one row
per algorithm x seed), ``comparison.md`` (the protocol, then the table) and ``comparison.json``.
Every row says which group labels the algorithm used (``group_labels``: none / validation /
training, beside the selection rule's) and its compute: its own epochs and optimiser steps and the
totals including the runs it starts from (the ERM checkpoint, JTT's stage 1).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spurmem.record import write_json_atomic, write_text_atomic
from spurmem.train.algorithm import selection_group_labels
from spurmem.train.compare import CompareResult, PlannedRun

HEADLINE = [("test/worst_group_accuracy", "test WGA"), ("test/adjusted_average", "test adjusted avg"),
            ("test/average", "test avg")]


def train_accuracy_at(run: PlannedRun, epoch: int, cache_dir: Path, dataset=None) -> dict[str, float]:
    """``{"train/acc_g<g>": ...}`` of a run's checkpoint at ``epoch``, evaluated once and cached in
    ``cache_dir`` (for runs that did not evaluate the train split every epoch)."""
    from spurmem.errors import UnreadableFileError
    from spurmem.metrics import evaluate, summarize
    from spurmem.train.run import load_run
    from spurmem.untrusted import read_json_file

    cache = cache_dir / f"{run.run_dir.name}-epoch{epoch}.json"
    if cache.is_file():
        try:
            cached = read_json_file(cache, "cached train metrics (JSON)")
        except UnreadableFileError:
            cached = None  # a damaged cache is recomputed
        if isinstance(cached, dict):
            return cached
    loaded = load_run(run.run_dir, epoch=epoch, device=run.config.device, dataset=dataset)
    flat = summarize(evaluate(loaded.model, loaded.dataset, ["train"], device=run.config.device))
    write_json_atomic(cache, flat)
    return flat


def run_budget(run_dir: Path) -> dict[str, int | None]:
    """A run's own epochs and optimiser steps, and the totals with the checkpoints it builds on (the
    ``init_from`` start, JTT's stage-1 checkpoint), from run.json (steps are None for old runs)."""
    from spurmem.train.run import read_info, resolve_epoch

    info = read_info(run_dir)
    epochs, per_epoch = int(info.get("epochs") or 0), info.get("steps_per_epoch")
    steps = None if per_epoch is None else epochs * int(per_epoch)
    sources = []
    if info.get("init_from"):
        sources.append((info["init_from"]["run"], int(info["init_from"]["epoch"])))
    stage1 = (info.get("algorithm_info") or {}).get("identification_run")
    if stage1:
        sources.append((stage1, resolve_epoch(stage1, info["algorithm_info"]["identification_epoch"])))
    total_epochs, total_steps = epochs, steps
    for src, epoch in sources:
        src_per_epoch = read_info(src).get("steps_per_epoch")
        total_epochs += epoch
        total_steps = None if total_steps is None or src_per_epoch is None else total_steps + epoch * int(src_per_epoch)
    return {"epochs": epochs, "steps": steps, "total_epochs": total_epochs, "total_steps": total_steps}


def run_metrics(run: PlannedRun, cache_dir: Path | None = None, dataset=None) -> dict[str, Any]:
    """Metrics of one finished run at its selected epoch (memorisation gap = train - test, per group)."""
    from spurmem.train.run import read_history, read_info

    info = read_info(run.run_dir)
    selection = info.get("selection") or {}
    epoch = selection.get("epoch")
    row = next((r for r in read_history(run.run_dir) if r["epoch"] == epoch), None)
    if row is None:
        raise FileNotFoundError(f"{run.run_dir}: no metrics for the selected epoch {epoch}")
    if "train/acc_g0" not in row and cache_dir is not None:
        row = {**row, **train_accuracy_at(run, epoch, cache_dir, dataset)}
    from spurmem.train.algorithms import ALGORITHMS

    out: dict[str, Any] = {"algorithm": run.algorithm, "seed": run.seed, "run_dir": str(run.run_dir),
                           "group_labels": info.get("group_labels", ALGORITHMS[run.config.algorithm].group_labels),
                           "selection_rule": run.config.selection,
                           "selection_group_labels": selection_group_labels(run.config.selection),
                           **run_budget(run.run_dir),
                           "selected_epoch": epoch, "selection_value": selection.get("value")}
    for key, _ in HEADLINE:
        out[key] = row.get(key)
    g = 0
    while f"test/acc_g{g}" in row:
        out[f"test/acc_g{g}"] = row[f"test/acc_g{g}"]
        train_acc = row.get(f"train/acc_g{g}")
        out[f"gap_g{g}"] = None if train_acc is None else train_acc - row[f"test/acc_g{g}"]
        g += 1
    out["terms"] = row.get("terms") or {}
    return out


def per_run_table(result: CompareResult) -> pd.DataFrame:
    cache = result.config.output / "train_eval"
    rows = [run_metrics(r, cache, result.dataset) for r in result.runs if r.trial is None]
    return pd.DataFrame(rows)


def _one(values) -> Any:
    """The value shared by every seed of an algorithm, or the distinct values joined with '/'."""
    distinct = list(dict.fromkeys(v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))))
    if len(distinct) == 1:
        return distinct[0].item() if isinstance(distinct[0], np.generic) else distinct[0]
    return "/".join(str(v) for v in distinct) if distinct else None


def algorithm_table(per_run: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """One row per algorithm: the group labels it used, the selection rule and its compute."""
    keys = ["group_labels", "selection_rule", "selection_group_labels", "epochs", "steps", "total_epochs",
            "total_steps"]
    rows = []
    for algorithm in [a for a in order if a in set(per_run["algorithm"])]:
        sub = per_run[per_run["algorithm"] == algorithm]
        rows.append({"algorithm": algorithm, **{k: _one(sub[k]) for k in keys if k in sub}})
    return pd.DataFrame(rows)


def summary_table(per_run: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Tidy: one row per algorithm x metric with mean, sample std (ddof 1) and the number of seeds,
    and the group labels the algorithm used."""
    metrics = [c for c in per_run.columns if c.startswith(("test/", "gap_g"))]
    rows = []
    for algorithm in [a for a in order if a in set(per_run["algorithm"])]:
        sub = per_run[per_run["algorithm"] == algorithm]
        labels = _one(sub["group_labels"]) if "group_labels" in sub else None
        for m in metrics:
            values = pd.to_numeric(sub[m], errors="coerce").dropna().to_numpy(dtype=float)
            rows.append({
                "algorithm": algorithm, "group_labels": labels, "metric": m, "n_seeds": len(values),
                "mean": float(values.mean()) if len(values) else math.nan,
                "std": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
            })
    return pd.DataFrame(rows)


def _cell(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{100 * mean:.1f}" + ("" if math.isnan(std) else f" ± {100 * std:.1f}")


def protocol_text(result: CompareResult, group_names: list[str] | None = None) -> str:
    c = result.config
    lines = [
        f"# Comparison: {c.name}",
        "",
        f"- dataset: {c.dataset} {c.dataset_params or ''}".rstrip(),
        f"- backbone: {c.model} {c.model_params or ''}".rstrip() + (f", weights {c.weights}" if c.weights else ""),
        f"- seeds: {c.seeds} (mean ± sample std over seeds)",
        f"- budget: {c.budget}: {c.scratch_epochs} epochs from scratch (erm, reweight, groupdro, jtt stage 2)"
        + (f" = ERM's {c.epochs} + fine-tuning's {c.fine_tune_epochs}" if c.budget == "matched" else "")
        + f"; erm-continue and spurmem fine-tune {c.fine_tune_epochs} epochs from the '{c.init_epoch}' checkpoint "
        f"of a {c.epochs}-epoch ERM run of the same seed; dfr and neurontune refit the head of that checkpoint; jtt "
        f"stage 1 = that ERM run's early checkpoint. 'epochs' = the checkpoints a row builds on + its own; "
        f"'steps' = total optimiser steps",
        f"- selection: {c.selection_rule} (one rule for every algorithm; the epoch it picks is the one reported; "
        f"it reads {selection_group_labels(c.selection_rule)} group labels)",
        "- group labels: what each algorithm itself uses (none / validation / training), apart from selection",
        "- averages: 'test avg' = plain accuracy over the test split; 'test adjusted avg' = group accuracies "
        "weighted by the training group proportions",
        "- gap g = train accuracy - test accuracy of group g (memorisation gap), at the selected epoch"
        + (" (train split evaluated at that epoch only)" if c.train_eval == "selected" else ""),
    ]
    for label, spec in c.variants.items():
        if label in c.algorithms:
            lines.append(f"- variant {label}: {spec.get('algorithm')} with " + ", ".join(
                f"{k}={v}" for k, v in spec.items() if k != "algorithm"))
    if group_names:
        lines.append("- groups: " + ", ".join(f"g{i} = {n}" for i, n in enumerate(group_names)))
    if result.search_log:
        lines.append(f"- hyper-parameters: random search, {c.search.trials} draws + defaults per algorithm "
                     f"(seed {c.search.seed}), chosen by the selection value on seed {c.seeds[0]}")
    else:
        lines.append("- hyper-parameters: registry defaults (spurmem.train.hparams) plus the config's overrides")
    lines.append("- chosen hyper-parameters: " + "; ".join(
        f"{a}: {h.to_dict()}" for a, h in result.chosen.items()))
    return "\n".join(lines)


def _epochs_cell(row: dict[str, Any]) -> str:
    """``start + own`` epochs (``own`` alone for a run from scratch)."""
    own, total = row.get("epochs"), row.get("total_epochs")
    if own is None or total is None or isinstance(total, str) or isinstance(own, str):
        return "n/a" if total is None else str(total)
    own, total = int(own), int(total)
    return f"{total - own} + {own}" if total != own else str(own)


def markdown_table(summary: pd.DataFrame, order: list[str], algorithms: pd.DataFrame | None = None) -> str:
    metrics = list(dict.fromkeys(summary["metric"]))
    names = dict(HEADLINE)
    info = {} if algorithms is None else {r["algorithm"]: r for r in algorithms.to_dict(orient="records")}
    header = ["algorithm", "group labels", "epochs", "steps", "seeds"] + [
        names.get(m, m.replace("test/acc_", "test acc ").replace("gap_", "gap ")) for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for algorithm in [a for a in order if a in set(summary["algorithm"])]:
        sub = summary[summary["algorithm"] == algorithm].set_index("metric")
        row = info.get(algorithm, {})
        steps = row.get("total_steps")
        cells = [algorithm, str(row.get("group_labels", "n/a")), _epochs_cell(row),
                 "n/a" if steps is None or (isinstance(steps, float) and math.isnan(steps))
                 else str(int(steps)) if isinstance(steps, (int, float, np.number)) else str(steps),
                 str(int(sub["n_seeds"].max()))]
        cells += [_cell(sub.loc[m, "mean"], sub.loc[m, "std"]) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_comparison(result: CompareResult) -> tuple[str, dict[str, Path]]:
    """Build the tables, write the four files into the comparison folder (its lock held), return
    (markdown, paths)."""
    from spurmem.locks import folder_lock

    with folder_lock(result.config.output, f"compare {result.config.name}"):
        return _write_comparison(result)


def _write_comparison(result: CompareResult) -> tuple[str, dict[str, Path]]:
    out = result.config.output
    order = [a for a in result.config.algorithms]
    per_run = per_run_table(result)
    summary = summary_table(per_run, order)
    algorithms = algorithm_table(per_run, order)
    text = protocol_text(result, result.group_names) + "\n\n" + markdown_table(summary, order, algorithms) + "\n"
    paths = {
        "markdown": write_text_atomic(out / "comparison.md", text),
        "csv": write_text_atomic(out / "comparison.csv", summary.to_csv(index=False)),
        "per_run": write_text_atomic(out / "per_run.csv", per_run.drop(columns=["terms"]).to_csv(index=False)),
        "json": write_json_atomic(out / "comparison.json", {
            "config": result.config.model_dump(mode="json"),
            "selection_rule": result.config.selection_rule,
            "budget": result.config.budget,
            "algorithms": {r["algorithm"]: r for r in _records(algorithms)},
            "chosen_hparams": {a: h.to_dict() for a, h in result.chosen.items()},
            "search": result.search_log,
            "summary": _records(summary),
            "runs": _records(per_run),
        }),
    }
    return text, paths


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    def clean(v):
        if isinstance(v, float) and math.isnan(v):
            return None
        if isinstance(v, np.generic):
            return v.item()
        return v

    return [{k: clean(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


__all__ = ["algorithm_table", "per_run_table", "protocol_text", "run_budget", "run_metrics", "summary_table",
           "write_comparison"]
