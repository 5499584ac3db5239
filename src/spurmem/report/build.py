"""Assemble a report from run directories: read what each stage wrote, draw, tabulate, judge.

``build_report(run_dirs, out_dir)`` finds every run at or below the given folders and writes the
report there. Each section reads only the files of its stage (through ``spurmem.report.inputs``);
a section whose files are absent is kept with a note naming the command that produces them, so a
report of a training run alone is still complete about what it does not show.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from spurmem.progress import Progress
from spurmem.report import inputs
from spurmem.report.figures import (
    Provenance,
    plot_group_accuracy_by_algorithm,
    plot_group_accuracy_over_epochs,
    plot_memorization_gap,
)
from spurmem.report.html import Report, Section, write_report
from spurmem.report.reproducibility import reproducibility_section
from spurmem.report.runs import Run, find_runs, group_history, headline, read_run, rule_text
from spurmem.report.sections import comparison_section, memorization_section, probe_section
from spurmem.report.tables import ReportTable
from spurmem.report.verdicts import claim_verdicts


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_")


def load_runs(paths: list[str | Path]) -> list[Run]:
    found: list[Path] = []
    for p in paths:
        found.extend(find_runs(p))
    if not found:
        raise FileNotFoundError(f"no run directory (a folder with run.json) under {', '.join(map(str, paths))}")
    return [read_run(p) for p in sorted(set(found))]


def training_section(runs: list[Run]) -> Section:
    """Per-group accuracy over epochs (ERM on every split; other algorithms side by side on test) and the
    runs' headline table."""
    section = Section(
        "Training: per-group accuracy over epochs",
        intro="Each group's accuracy on every split as training proceeds. Minority groups that reach full training "
        "accuracy while their test accuracy stays low are memorised rather than learned.",
    )
    settings = _by_setting(runs)
    for i, (setting, these) in enumerate(settings.items()):
        tag = "" if i == 0 else f"_{_slug(setting)}"
        label = f" [{setting}]" if len(settings) > 1 else ""
        section.figures += [replace(f, name=f.name + tag, title=f.title + label) for f in _curve_figures(these)]
    if not section.figures:
        section.notes.append("No run has two evaluated epochs yet (metrics.jsonl).")
    table = pd.DataFrame([headline(r) for r in runs])
    keep = ["name", "algorithm", "seed", "epochs", "selected_epoch", "val_wga", "test_wga", "test_average",
            "test_adjusted_average", "max_memorization_gap"]
    datasets = sorted({f"{h['dataset']} / {h['model']}" for h in table.to_dict("records")})
    rules = sorted({rule_text(r.selection_rule) for r in runs})
    section.tables.append(ReportTable(
        "runs", "Runs", f"Dataset / model: {', '.join(datasets)}. Metrics at each run's selected epoch "
        f"({', '.join(rules)}). test_average is plain accuracy over the test split; test_adjusted_average weights "
        "group accuracies by the training group proportions; max_memorization_gap is the largest train minus test "
        "accuracy of any group. All columns (status, paths) are in tables/runs.csv.", table, columns=keep))
    return section


def _by_setting(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs grouped by ``dataset / model``: groups and seeds are only pooled within one setting."""
    out: dict[str, list[Run]] = {}
    for r in runs:
        out.setdefault(f"{r.info.get('dataset', '?')} / {r.info.get('model', '?')}", []).append(r)
    return out


def _curve_figures(runs: list[Run]) -> list:
    """ERM (or the first algorithm) on every split; the other algorithms side by side on test."""
    curves = [r for r in runs if len(r.history) > 1]  # a curve needs two evaluated epochs (dfr refits a head)
    by_alg: dict[str, list[Run]] = {}
    for run in sorted(curves, key=lambda r: (r.algorithm != "erm", r.algorithm, r.name)):
        by_alg.setdefault(run.algorithm, []).append(run)
    if not by_alg:
        return []
    first, *others = by_alg
    group = by_alg[first]
    hist = pd.concat([group_history(r) for r in group], ignore_index=True)
    prov = Provenance("train, val, test", [r.seed for r in group], _selection_text(group))
    fig = plot_group_accuracy_over_epochs(hist, prov, [r.selected_epoch for r in group if r.selected_epoch],
                                          title_suffix=f" ({first})")
    figures = [replace(fig, title=f"{fig.title}: {first}")]
    if others:
        rest = [r for a in others for r in by_alg[a]]
        hist = pd.concat([group_history(r) for r in rest], ignore_index=True)
        prov = Provenance("test", [r.seed for r in rest], _selection_text(rest))
        selected = {a: [r.selected_epoch for r in by_alg[a] if r.selected_epoch is not None] for a in others}
        figures.append(plot_group_accuracy_by_algorithm(hist, prov, "test", selected))
    return figures


def _selection_text(runs: list[Run]) -> str:
    rules = sorted({rule_text(r.selection_rule) for r in runs})
    epochs = ", ".join(str(r.selected_epoch) for r in runs)
    return f"{' / '.join(rules)} (epochs {epochs})"


def gap_section(runs: list[Run]) -> Section:
    """Memorisation gap per group (train minus test accuracy at the selected epoch)."""
    section = Section(
        "Memorisation gap per group",
        intro="Training accuracy minus held-out (test) accuracy of each group for the same model, at the selected "
        "epoch. A large gap on the minority groups and a small one on the majority groups is the signature "
        "of memorised minority examples.",
    )
    frames = [inputs.memorization_gaps(r) for r in runs]
    frames = [f for f in frames if not f.empty]
    if not frames:
        section.notes.append("No run has both train and test group accuracies; train with eval_splits "
                             "including train and test.")
        return section
    gaps = pd.concat(frames, ignore_index=True)
    order = sorted(dict.fromkeys(gaps["algorithm"]), key=lambda a: (a != "erm", a))
    gaps = gaps.assign(_o=gaps["algorithm"].map(order.index)).sort_values(["_o", "seed", "group"]).drop(columns="_o")
    settings = _by_setting(runs)
    for i, (setting, these) in enumerate(settings.items()):
        part = gaps[gaps["run"].isin({r.name for r in these})]
        if part.empty:
            continue
        prov = Provenance("train vs test", part["seed"].tolist(), _selection_text(these))
        fig = plot_memorization_gap(part, prov)
        section.figures.append(fig if i == 0 else replace(fig, name=f"{fig.name}_{_slug(setting)}",
                                                           title=f"{fig.title} [{setting}]"))
    gaps = gaps.assign(column=[f"g{g} {n} ({r})" for g, n, r in zip(gaps["group"], gaps["group_name"], gaps["role"])])
    wide = gaps.pivot_table(index=["run", "algorithm", "seed", "epoch"], columns="column", values="gap",
                            sort=False).reset_index()
    wide.columns.name = None
    section.tables.append(ReportTable(
        "memorization_gap", "Memorisation gap per group", "Train accuracy - test accuracy of each group (fractions) "
        "at each run's selected epoch; tables/memorization_gap.csv has one row per run x group with both "
        "accuracies.", gaps.drop(columns="column"), display=wide))
    return section


def build_report(paths: list[str | Path], out_dir: str | Path, title: str = "spurmem report",
                 progress: bool = False) -> Path:
    """Read the runs at or below ``paths`` and write the report into ``out_dir``; returns report.html."""
    return write_report(assemble_report(paths, title, progress), out_dir)


def assemble_report(paths: list[str | Path], title: str = "spurmem report", progress: bool = False) -> Report:
    """The report of the runs at or below ``paths`` (verdicts, sections, figures, tables), unwritten."""
    runs = load_runs(paths)
    train_runs = [r for r in runs if r.info.get("kind", "train") == "train"]
    builders = [(training_section, train_runs), (gap_section, train_runs), (probe_section, runs),
                (memorization_section, runs), (lambda rs: comparison_section(paths, rs), runs),
                (lambda rs: reproducibility_section(paths, rs), runs)]
    sections = []
    with Progress("report", len(builders), unit="sections", enabled=progress,
                  cost=f"{len(builders)} sections from {len(runs)} runs") as bar:
        for build, these in builders:
            sections.append(build(these))
            bar.advance(1, info=sections[-1].title)
    return Report(title=title, verdicts=claim_verdicts(paths, runs), sections=sections, runs=[r.name for r in runs],
                  setting=describe_setting(runs))


def describe_setting(runs: list[Run]) -> str:
    """One sentence per dataset: its training groups, the models, and each algorithm with its seeds."""
    parts = []
    for dataset in dict.fromkeys(str(r.info.get("dataset", "?")) for r in runs):
        these = [r for r in runs if str(r.info.get("dataset", "?")) == dataset]
        info = next((r.info.get("dataset_info") for r in these if r.info.get("dataset_info")), None) or {}
        groups = ""
        if info.get("group_names") and info.get("counts", {}).get("train"):
            minority = set(info.get("minority_groups", []))
            groups = " (training groups: " + ", ".join(
                f"{n} {c}{' minority' if g in minority else ''}"
                for g, (n, c) in enumerate(zip(info["group_names"], info["counts"]["train"]))) + ")"
        models = ", ".join(dict.fromkeys(str(r.info.get("model", "?")) for r in these))
        algs = "; ".join(
            f"{alg} (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))})"
            for alg, seeds in _seeds_by_algorithm(these).items())
        parts.append(f"Data: {dataset}{groups}. Model: {models}. Runs: {algs}.")
    return " ".join(parts)


def _seeds_by_algorithm(runs: list[Run]) -> dict[str, list]:
    out: dict[str, list] = {}
    for r in sorted(runs, key=lambda r: (r.algorithm != "erm", r.algorithm, r.seed if r.seed is not None else -1)):
        out.setdefault(r.algorithm, []).append(r.seed)
    return out
