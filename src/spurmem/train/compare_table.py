"""The comparison table: per-run metrics at the selected epoch, and mean +- std per algorithm.

Written as ``comparison.csv`` (tidy: one row per algorithm x metric), ``per_run.csv`` (one row
per algorithm x seed), ``comparison.md`` (the protocol, then the table) and ``comparison.json``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spurmem.record import write_json_atomic, write_text_atomic
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
    out: dict[str, Any] = {"algorithm": run.algorithm, "seed": run.seed, "run_dir": str(run.run_dir),
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


def summary_table(per_run: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Tidy: one row per algorithm x metric with mean, sample std (ddof 1) and the number of seeds."""
    metrics = [c for c in per_run.columns if c.startswith(("test/", "gap_g"))]
    rows = []
    for algorithm in [a for a in order if a in set(per_run["algorithm"])]:
        sub = per_run[per_run["algorithm"] == algorithm]
        for m in metrics:
            values = pd.to_numeric(sub[m], errors="coerce").dropna().to_numpy(dtype=float)
            rows.append({
                "algorithm": algorithm, "metric": m, "n_seeds": len(values),
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
        f"- budget: {c.epochs} epochs from scratch (erm, reweight, groupdro, jtt stage 2); erm-continue and "
        f"spurmem fine-tune {c.fine_tune_epochs} epochs from the ERM run's '{c.init_epoch}' checkpoint of the same "
        f"seed; dfr refits the head of that checkpoint; jtt stage 1 = that ERM run's early checkpoint",
        f"- selection: {c.selection_rule} (one rule for every algorithm; the epoch it picks is the one reported)",
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


def markdown_table(summary: pd.DataFrame, order: list[str]) -> str:
    metrics = list(dict.fromkeys(summary["metric"]))
    names = dict(HEADLINE)
    header = ["algorithm", "seeds"] + [names.get(m, m.replace("test/acc_", "test acc ").replace("gap_", "gap "))
                                       for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for algorithm in [a for a in order if a in set(summary["algorithm"])]:
        sub = summary[summary["algorithm"] == algorithm].set_index("metric")
        cells = [algorithm, str(int(sub["n_seeds"].max()))]
        cells += [_cell(sub.loc[m, "mean"], sub.loc[m, "std"]) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_comparison(result: CompareResult) -> tuple[str, dict[str, Path]]:
    """Build the tables, write the four files into the comparison folder, return (markdown, paths)."""
    out = result.config.output
    order = [a for a in result.config.algorithms]
    per_run = per_run_table(result)
    summary = summary_table(per_run, order)
    text = protocol_text(result, result.group_names) + "\n\n" + markdown_table(summary, order) + "\n"
    paths = {
        "markdown": write_text_atomic(out / "comparison.md", text),
        "csv": write_text_atomic(out / "comparison.csv", summary.to_csv(index=False)),
        "per_run": write_text_atomic(out / "per_run.csv", per_run.drop(columns=["terms"]).to_csv(index=False)),
        "json": write_json_atomic(out / "comparison.json", {
            "config": result.config.model_dump(mode="json"),
            "selection_rule": result.config.selection_rule,
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


__all__ = ["per_run_table", "protocol_text", "run_metrics", "summary_table", "write_comparison"]
