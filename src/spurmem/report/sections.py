"""Report sections for the later stages: probes, the memorisation scan and the algorithm comparison.

Each reads its stage's files through ``spurmem.report.inputs``; when they are absent the section
keeps a note naming the command that produces them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from spurmem.report import inputs
from spurmem.report.figures import (
    Provenance,
    plot_algorithm_comparison,
    plot_cumulative_share,
    plot_example_grid,
    plot_group_matrix,
    plot_layer_memorization,
    plot_probe_curves,
)
from spurmem.report.html import Section
from spurmem.report.runs import Run, rule_text
from spurmem.report.tables import ReportTable


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in str(text)).strip("_")


def _probe_provenance(probe: inputs.ProbeFiles, split: str, what_average: str) -> Provenance:
    run = probe.run
    repeats = probe.config.get("repeats", "?")
    return Provenance(
        f"{split} (units ranked on {', '.join(map(str, probe.config.get('splits', ['train'])))})",
        [run.seed], f"probed checkpoint: epoch {probe.epoch} ('{probe.config.get('epoch', 'selected')}'); the run's "
        f"selection: {run.describe_selection()}; random repeats: {repeats} (probe seed "
        f"{probe.config.get('seed', 0)})", what_average,
    )


def probe_section(runs: list[Run]) -> Section:
    section = Section(
        "Probes: accuracy change per group vs k",
        intro="Units ranked by each scorer are modified k at a time and every group is evaluated before and after. "
        "The random control (dashed) shows what modifying as many arbitrary units does. A drop in a minority group "
        "that its same-class majority group shares is class collapse, not forgetting of memorised examples.",
    )
    probes = [p for r in runs for p in inputs.find_probes(r)]
    section.notes += [f"Left out: {problem}." for r in runs for problem in inputs.incomplete_sets(r, ("probe",))]
    if not probes:
        section.notes.append("No probe results found in these runs: run `spurmem probe RUN_DIR`.")
        return section
    for i, probe in enumerate(probes):
        tag = "" if i == 0 else f"_{_slug(probe.run.name)}_{_slug(probe.name)}"
        label = f" ({probe.run.name}, probe {probe.name})" if len(probes) > 1 else ""
        interventions = list(dict.fromkeys(probe.summary["intervention"])) if not probe.summary.empty else []
        for j, intervention in enumerate(interventions):
            curves = inputs.probe_curves(probe, intervention)
            if curves.empty:
                continue
            fig = plot_probe_curves(curves, _probe_provenance(
                probe, "train", "per-group accuracy drop (original minus modified), mean over repeats"))
            section.figures.append(replace(fig, name=fig.name + ("" if j == 0 else f"_{_slug(intervention)}") + tag,
                                           title=f"{fig.title}: {intervention}{label}"))
        for j, intervention in enumerate(interventions):
            matrix, k = inputs.probe_matrix(probe, intervention)
            if matrix.empty:
                continue
            fig = plot_group_matrix(matrix, _probe_provenance(probe, "train", "per-group accuracy drop, no average"))
            section.figures.append(replace(
                fig, name=fig.name + ("" if j == 0 else f"_{_slug(intervention)}") + tag,
                title=f"Group-by-group matrix: group-gradient, k={k}, {intervention}{label}"))
        claims = pd.DataFrame([{"claim": c.get("claim"), "verdict": c.get("verdict"), "statistic": c.get("statistic")}
                               for c in probe.claims])
        section.tables.append(ReportTable(
            "probe_claims" + tag, "Probe claims (docs/method.md §5.1, 5.2)" + label,
            f"As judged by the probe from {probe.path}; thresholds in its config.yaml.", claims))
        if not probe.verdicts.empty:
            cols = [c for c in ("setting", "group_name", "verdict", "train_share", "heldout_share", "majority_share",
                                "worst_other", "worst_other_drop", "margin_change", "drop_p", "control_n", "reason")
                    if c in probe.verdicts]
            # settings with an effect first, the strongest train drop first within each outcome
            ordered = probe.verdicts.assign(_none=probe.verdicts["verdict"] == "no effect").sort_values(
                ["_none", "train_share"], ascending=[True, False], kind="stable")
            section.tables.append(ReportTable(
                "probe_verdicts" + tag, "Probe outcome per setting and minority group" + label,
                "Shares are the fraction of the group's accuracy lost (train, held-out "
                f"{probe.verdicts['heldout_split'].iloc[0] if 'heldout_split' in probe.verdicts else ''}; majority = "
                "same-class majority group on train); worst_other = the other group (and split) that lost most, "
                "worst_other_drop its loss; drop_p = exact one-sided p-value of the drop among control_n random "
                "draws (docs/method.md §5). "
                "Counts: " + ", ".join(f"{k}: {v}" for k, v in probe.verdict_counts.items()) + ". Settings with an "
                "effect first.", ordered[cols], max_rows=20))
    return section


def memorization_section(runs: list[Run]) -> Section:
    section = Section(
        "Unit-level memorisation",
        intro="Each unit's memorisation score is the drop in the minority groups' training accuracy when the unit "
        "alone is zeroed, minus the drop in their held-out accuracy. If memorisation is localised, a few units "
        "hold most of the total; the sign-flip null shows how concentrated noise alone looks.",
    )
    found = [m for r in sorted(runs, key=lambda r: (r.algorithm != "erm", str(r.path)))
             if (m := inputs.find_memorization(r)) is not None]
    section.notes += [f"Left out: {problem}." for r in runs
                      for problem in inputs.incomplete_sets(r, ("units", "examples"))]
    if not found:
        section.notes.append("No memorisation scan found in these runs: run `spurmem memorization units RUN_DIR` "
                             "(and `spurmem memorization examples RUN_DIR` for example-level scores).")
        return section
    for i, mem in enumerate(found):
        tag = "" if i == 0 else f"_{_slug(mem.run.name)}"
        label = f" ({mem.run.name})" if len(found) > 1 else ""
        s = mem.units_summary
        limited = (s.get("limits") or {}).get("statement")  # a scan narrowed by --layers / --examples-per-group
        prov = Provenance(f"train vs {s.get('heldout_split', 'held-out')}" + (f" ({limited})" if limited else ""),
                          [mem.run.seed],
                          f"scanned checkpoint: epoch {s.get('epoch', '?')}; the run's selection: "
                          f"{mem.run.describe_selection()}", "pooled accuracy of the minority groups")
        if not mem.ranked.empty:
            if s.get("statement"):
                section.notes.append(f"{mem.run.name}: {s['statement']}.")
            fig = plot_cumulative_share(mem.ranked, prov, mem.curve)
            section.figures.append(replace(fig, name=fig.name + tag, title=fig.title + label))
            if not mem.layers.empty:
                fig = plot_layer_memorization(mem.layers, prov)
                section.figures.append(replace(fig, name=fig.name + tag, title=fig.title + label))
                cols = [c for c in ("layer", "units", "positive_score", "share", "uniform_share", "max_score",
                                    "mean_train_drop", "mean_heldout_drop") if c in mem.layers]
                section.tables.append(ReportTable(
                    "memorization_layers" + tag, "Per-layer memorisation" + label,
                    "share = the layer's part of the total positive score; uniform_share = its part of the units.",
                    mem.layers[cols]))
            cols = [c for c in mem.ranked.columns if c in ("rank", "unit", "score", "train_drop", "heldout_drop")
                    or c.startswith("score_g")]
            section.tables.append(ReportTable(
                "memorization_top_units" + tag, "Units with the highest memorisation score" + label,
                "Drops are of the pooled minority accuracy (fractions) when the unit alone is zeroed.",
                mem.ranked[cols], max_rows=15))
        if not mem.examples.empty:
            images, labels, _ = inputs.most_memorized_images(mem)
            info = mem.examples_summary
            ex_prov = Provenance("train", [mem.run.seed], f"{info.get('models', '?')} half-data models, epoch "
                                 f"{info.get('epoch', '?')} of each", "per-example score, no average")
            fig = plot_example_grid(
                images, labels, ex_prov, "Most memorised training examples" + label, name="most_memorized_examples" + tag,
                what=f"The {len(images)} training examples with the highest example-level memorisation score "
                "(accuracy of the models that trained on the example minus that of the models that did not; "
                f"{info.get('design', 'random halves')})."
                + (f" Warning: {info['note']}." if info.get("note") else ""))
            section.figures.append(fig)
            if not mem.example_groups.empty:
                section.tables.append(ReportTable(
                    "memorization_examples_groups" + tag, "Example-level memorisation per group" + label,
                    "mem = accuracy when included minus when held out; share_high = share of the group with mem >= "
                    "the threshold; share_of_all_high = the group's part of all such examples.", mem.example_groups))
        else:
            section.notes.append(f"{mem.run.name}: no example-level scores (run `spurmem memorization examples "
                                 "RUN_DIR`), so no grid of the most memorised images.")
    return section


def comparison_table(cmp: inputs.Comparison) -> pd.DataFrame:
    """Wide: one row per algorithm, mean and sd over seeds of each headline metric and group."""
    rows = []
    for alg, part in cmp.summary.groupby("algorithm", sort=False):
        row = {"algorithm": alg, "seeds": int(part["n_seeds"].max())}
        for _, m in part.iterrows():
            label = inputs.METRIC_LABELS.get(m["metric"], m["metric"].replace("test/acc_", "test acc ")
                                             .replace("gap_", "gap "))
            row[f"{label} mean"] = m["mean"]
            row[f"{label} sd"] = m["std"]
        rows.append(row)
    return pd.DataFrame(rows)


def comparison_display(table: pd.DataFrame) -> pd.DataFrame:
    """The comparison for reading: each metric as ``mean ± sd`` in percent."""
    out = table[["algorithm", "seeds"]].copy()
    for col in [c for c in table.columns if c.endswith(" mean")]:
        label = col[: -len(" mean")]
        sd = table.get(f"{label} sd")
        out[f"{label} (%)"] = [
            "" if pd.isna(m) else f"{100 * m:.1f}" + ("" if sd is None or pd.isna(d) else f" ± {100 * d:.1f}")
            for m, d in zip(table[col], sd if sd is not None else [None] * len(table))
        ]
    return out


def comparison_section(paths: list[str | Path], runs: list[Run]) -> Section:
    section = Section(
        "Algorithm comparison",
        intro="Each algorithm over the same seeds under one protocol and one model-selection rule; the framework "
        "('spurmem') and its plain cross-entropy control ('erm-continue') fine-tune the ERM model with the same "
        "optimiser and budget.",
    )
    comparisons = inputs.find_comparisons(paths)
    if not comparisons:
        section.notes.append("No comparison found (comparison.json): run `spurmem compare`.")
        return section
    for i, cmp in enumerate(comparisons):
        suffix = "" if i == 0 else f"_{i + 1}"
        prov = Provenance("test", cmp.seeds, f"{rule_text(cmp.selection_rule)}, the same rule for every algorithm",
                          "WGA = lowest group; adjusted avg = group accuracies weighted by training group "
                          "proportions; avg = plain accuracy over the test split")
        headline = cmp.summary[cmp.summary["metric"].isin(list(inputs.METRIC_LABELS))]
        headline = headline.assign(metric=headline["metric"].map(inputs.METRIC_LABELS))
        if not headline.empty:
            fig = plot_algorithm_comparison(headline, prov)
            section.figures.append(replace(fig, name=fig.name + suffix))
        wide = comparison_table(cmp)
        section.tables.append(ReportTable(
            "comparison" + suffix, "Algorithm comparison" + (f" ({cmp.path.name})" if suffix else ""),
            f"Mean and sample sd over seeds {cmp.seeds} at each run's selected epoch ({rule_text(cmp.selection_rule)}); "
            "gap g = train - test accuracy of group g. From " + str(cmp.path / inputs.COMPARISON_FILE) + ".",
            wide, display=comparison_display(wide), fold=False))  # the headline result: always shown
        first = ["algorithm", "seed", "selected_epoch", "selection_value", *inputs.METRIC_LABELS]
        lead = [c for c in first if c in cmp.per_run]
        order = lead + sorted(c for c in cmp.per_run if c not in lead and c != "run_dir") + \
            (["run_dir"] if "run_dir" in cmp.per_run else [])
        shown = cmp.per_run[[c for c in order if c != "run_dir"]]
        section.tables.append(ReportTable(
            "comparison_per_run" + suffix, "Comparison: every run", "One row per algorithm x seed, metrics at the "
            "run's selected epoch (fractions); gap_g = train - test accuracy of group g. The CSV adds each run's "
            "folder (run_dir).", cmp.per_run[order],
            display=shown.rename(columns={k: v for k, v in inputs.METRIC_LABELS.items()})))
    return section
