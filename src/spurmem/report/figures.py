"""Report figures (matplotlib Agg; PNG for the HTML, PDF and SVG for papers), each drawn from a tidy
pandas table.

Every function returns a :class:`ReportFigure` whose caption states the split, the seeds, the
selection rule and which average the figure shows (:class:`Provenance`). Figures are drawn on
``matplotlib.figure.Figure`` objects with the Agg canvas, never through pyplot, so no global state or
display is involved. Groups keep one colour in every figure (``group_color``); colours come from the
Okabe-Ito palette (distinct, colour-blind safe, up to eight series). Figures are sized for the
report's ~1100-px column and drawn with :data:`STYLE`, so text stays readable there
(``ReportFigure.min_text_px``); epoch axes have integer ticks; error bars appear only with two or more seeds.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass, field
from typing import Callable, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Text
from matplotlib.ticker import FuncFormatter, MaxNLocator

# Okabe & Ito (2008): eight colours told apart by everyone; yellow last (weak on white).
_PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]
RANDOM_CONTROL = "random"
DPI = 110
DISPLAY_PX = 1100  # width of the report's figure column (HTML max-width 1180 px less padding)
VECTOR_FORMATS = ("pdf", "svg")
STYLE = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9.5,
         "ytick.labelsize": 9.5, "legend.fontsize": 9, "svg.hashsalt": "spurmem", "pdf.compression": 6}


def group_color(group: int) -> str:
    return _PALETTE[int(group) % len(_PALETTE)]


@dataclass
class Provenance:
    """How the numbers behind a figure or table were made; rendered into its caption."""

    split: str
    seeds: Sequence[int | None] = field(default_factory=list)
    selection: str = "not stated"
    average: str = "per-group accuracy (no average)"

    def text(self) -> str:
        seeds = [s for s in self.seeds if s is not None]
        seed_text = ", ".join(str(s) for s in sorted(set(seeds))) if seeds else "not recorded"
        return (
            f"Split: {self.split}. Seeds: {seed_text} (n={len(set(seeds))}). "
            f"Selection: {self.selection}. Average: {self.average}."
        )


@dataclass
class ReportFigure:
    """A rendered figure: ``name`` is the file stem; ``caption`` ends with the provenance. ``vector``
    holds the same figure as PDF and SVG; ``min_text_px`` is the height of its smallest text in pixels
    once the PNG is shown in the report's column (scaled down when wider than :data:`DISPLAY_PX`)."""

    name: str
    title: str
    caption: str
    png: bytes
    vector: dict[str, bytes] = field(default_factory=dict)
    min_text_px: float | None = None


def _styled(fn: Callable[..., ReportFigure]) -> Callable[..., ReportFigure]:
    """Draw inside the report's style (font sizes) whatever the caller's matplotlib settings."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs) -> ReportFigure:
        with matplotlib.rc_context(STYLE):
            return fn(*args, **kwargs)

    return wrapper


def _render(fig: Figure, name: str, title: str, what: str, prov: Provenance) -> ReportFigure:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")  # keeps legends placed outside the axes
    width_px = _png_width(buf.getvalue())
    vector = {}
    for fmt in VECTOR_FORMATS:
        out = io.BytesIO()
        fig.savefig(out, format=fmt, bbox_inches="tight", metadata={"Date": None} if fmt == "svg" else
                    {"CreationDate": None})
        vector[fmt] = out.getvalue()
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    min_px = min(sizes) * DPI / 72 * min(1.0, DISPLAY_PX / width_px) if sizes else None
    return ReportFigure(name=name, title=title, caption=f"{what} {prov.text()}", png=buf.getvalue(), vector=vector,
                        min_text_px=min_px)


def _png_width(png: bytes) -> int:
    return int.from_bytes(png[16:20], "big")  # the IHDR chunk: width, then height


def _error_bars(std: pd.Series) -> np.ndarray | None:
    """sd in points for ``yerr``, or None (no bars, no caps) when no value has one (one seed)."""
    values = 100 * std.to_numpy(dtype=float)
    return values if np.isfinite(values).any() else None


def _integer_epochs(ax) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _group_label(frame: pd.DataFrame, group: int) -> str:
    names = frame.loc[frame["group"] == group, "group_name"]
    name = str(names.iloc[0]) if len(names) else ""
    return f"g{group} {name}".strip()


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: table lacks column(s) {missing}; it has {list(frame.columns)}")
    if frame.empty:
        raise ValueError(f"{what}: table is empty")


@_styled
def plot_group_accuracy_over_epochs(
    history: pd.DataFrame, prov: Provenance, selected_epochs: Sequence[int] = (), title_suffix: str = ""
) -> ReportFigure:
    """Per-group accuracy over epochs, one panel per split (train/val/test).

    ``history``: epoch, split, group, group_name, accuracy[, seed]. Several seeds are drawn as their
    mean with the min-max range shaded; ``selected_epochs`` are marked with dashed lines."""
    _require(history, ["epoch", "split", "group", "group_name", "accuracy"], "group accuracy over epochs")
    splits = [s for s in ("train", "val", "test") if s in set(history["split"])]
    fig = Figure(figsize=(3.6 * len(splits), 3.4))
    axes = fig.subplots(1, len(splits), sharey=True, squeeze=False)[0]
    for ax, split in zip(axes, splits):
        part = history[history["split"] == split]
        for group, rows in part.groupby("group"):
            stats = rows.groupby("epoch")["accuracy"].agg(["mean", "min", "max"]).reset_index()
            color = group_color(group)
            ax.plot(stats["epoch"], 100 * stats["mean"], color=color, lw=1.8, label=_group_label(part, group))
            if "seed" in rows and rows["seed"].nunique() > 1:
                ax.fill_between(stats["epoch"], 100 * stats["min"], 100 * stats["max"], color=color, alpha=0.15)
        for e in sorted(set(selected_epochs)):
            ax.axvline(e, color="k", ls="--", lw=0.8)
        ax.set_title(split)
        ax.set_xlabel("epoch")
        _integer_epochs(ax)
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("group accuracy (%)")
    axes[-1].legend(loc="lower right")
    what = (
        f"Accuracy of each group over training epochs{title_suffix}; line = mean over seeds, shaded = "
        "range over seeds; dashed line = selected epoch."
    )
    prov = Provenance(", ".join(splits), prov.seeds, prov.selection, prov.average)
    return _render(fig, "group_accuracy_over_epochs", "Per-group accuracy over epochs", what, prov)


@_styled
def plot_group_accuracy_by_algorithm(history: pd.DataFrame, prov: Provenance, split: str = "test",
                                     selected: dict[str, Sequence[int]] | None = None) -> ReportFigure:
    """Per-group accuracy over epochs on one split, one panel per algorithm (e.g. the fine-tuning runs).

    ``history``: algorithm, epoch, split, group, group_name, accuracy[, seed]."""
    _require(history, ["algorithm", "epoch", "split", "group", "group_name", "accuracy"], "accuracy by algorithm")
    part = history[history["split"] == split]
    algorithms = list(dict.fromkeys(part["algorithm"]))
    ncol = max(1, min(3, len(algorithms)))
    nrow = int(np.ceil(max(1, len(algorithms)) / ncol))
    fig = Figure(figsize=(max(3.6 * ncol, 5.0), 3.1 * nrow))
    axes = fig.subplots(nrow, ncol, sharey=True, squeeze=False).ravel()
    for ax in axes[len(algorithms):]:
        ax.set_visible(False)
    for ax, alg in zip(axes, algorithms):
        rows_a = part[part["algorithm"] == alg]
        for group, rows in rows_a.groupby("group"):
            stats = rows.groupby("epoch")["accuracy"].agg(["mean", "min", "max"]).reset_index()
            ax.plot(stats["epoch"], 100 * stats["mean"], color=group_color(group), lw=1.8,
                    label=_group_label(rows_a, group))
            if "seed" in rows and rows["seed"].nunique() > 1:
                ax.fill_between(stats["epoch"], 100 * stats["min"], 100 * stats["max"], color=group_color(group),
                                alpha=0.15)
        for e in sorted(set((selected or {}).get(alg, ()))):
            ax.axvline(e, color="k", ls="--", lw=0.8)
        ax.set_title(alg)
        ax.set_xlabel("epoch (0 = starting checkpoint)")
        _integer_epochs(ax)
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    for ax in axes[::ncol]:
        ax.set_ylabel(f"{split} group accuracy (%)")
    axes[len(algorithms) - 1].legend(loc="lower right")
    what = (f"{split.capitalize()} accuracy of each group over the epochs of each algorithm; line = mean over seeds, "
            "shaded = range over seeds; dashed line = selected epoch.")
    prov = Provenance(split, prov.seeds, prov.selection, prov.average)
    return _render(fig, "group_accuracy_over_epochs_by_algorithm", "Per-group accuracy over epochs by algorithm",
                   what, prov)


@_styled
def plot_memorization_gap(gaps: pd.DataFrame, prov: Provenance) -> ReportFigure:
    """Memorisation gap acc_g(train) - acc_g(held-out) per group, mean +- sd over seeds; with an
    ``algorithm`` column, one bar per algorithm within each group.

    ``gaps``: group, group_name, role (majority/minority), gap[, seed, algorithm]."""
    _require(gaps, ["group", "group_name", "role", "gap"], "memorisation gap")
    gaps = gaps if "algorithm" in gaps else gaps.assign(algorithm="")
    algorithms = list(dict.fromkeys(gaps["algorithm"]))
    stats = gaps.groupby(["algorithm", "group", "group_name", "role"], sort=False)["gap"].agg(["mean", "std"])
    stats = stats.reset_index()
    groups = stats.drop_duplicates("group").sort_values("group")
    fig = Figure(figsize=(min(8.2, max(5.5, 0.3 * len(groups) * len(algorithms) + 3.5)), 3.8))
    ax = fig.subplots()
    width = 0.8 / len(algorithms)
    n_seeds = int(gaps.groupby("algorithm")["seed"].nunique().max()) if "seed" in gaps else 1
    for a_i, alg in enumerate(algorithms):
        part = stats[stats["algorithm"] == alg].set_index("group").reindex(groups["group"])
        x = np.arange(len(groups)) + (a_i - (len(algorithms) - 1) / 2) * width
        colors = [group_color(g) for g in groups["group"]] if len(algorithms) == 1 else _PALETTE[a_i % len(_PALETTE)]
        bars = ax.bar(x, 100 * part["mean"], width, yerr=_error_bars(part["std"]), color=colors, capsize=3,
                      edgecolor="black", linewidth=0.6, label=alg or None)
        for bar, role in zip(bars, part["role"]):
            bar.set_hatch("" if role == "majority" else "//")
    ax.set_xticks(np.arange(len(groups)), [f"g{g} {n}\n({r})" for g, n, r in
                                             zip(groups["group"], groups["group_name"], groups["role"])])
    ax.axhline(0, color="k", lw=0.8)
    ax.set_ylabel("train acc - held-out acc (points)")
    ax.grid(axis="y", alpha=0.3)
    if len(algorithms) > 1:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    spread = "one seed, so no error bars" if n_seeds < 2 else f"error bar = sd over {n_seeds} seeds"
    what = "Memorisation gap per group (training accuracy minus held-out accuracy of the same model); " \
           f"hatched = minority group; bar = mean, {spread}."
    return _render(fig, "memorization_gap", "Memorisation gap per group", what, prov)


@_styled
def plot_probe_curves(rows: pd.DataFrame, prov: Provenance) -> ReportFigure:
    """Change in accuracy per group vs k, one panel per scorer, with the random control.

    ``rows``: scorer, k, group, group_name, drop_mean, ci_low, ci_high (drop = original - modified,
    in [0, 1]). Rows with scorer ``random`` are the control, drawn dashed in every panel with the
    band of its draws that the verdicts use (``ci_low``/``ci_high`` as :func:`inputs.probe_curves`
    fills them)."""
    _require(rows, ["scorer", "k", "group", "group_name", "drop_mean", "ci_low", "ci_high"], "probe curves")
    scorers = [s for s in dict.fromkeys(rows["scorer"]) if s != RANDOM_CONTROL] or [RANDOM_CONTROL]
    control = rows[rows["scorer"] == RANDOM_CONTROL]
    ncol = min(3, len(scorers))
    nrow = int(np.ceil(len(scorers) / ncol))
    fig = Figure(figsize=(3.6 * ncol, 3.3 * nrow))
    axes = fig.subplots(nrow, ncol, sharey=True, squeeze=False).ravel()
    for ax, scorer in zip(axes, scorers):
        part = rows[rows["scorer"] == scorer]
        for group, grp in part.groupby("group"):
            grp = grp.sort_values("k")
            color = group_color(group)
            ax.plot(grp["k"], 100 * grp["drop_mean"], "o-", color=color, ms=3, label=_group_label(part, group))
            ax.fill_between(grp["k"], 100 * grp["ci_low"], 100 * grp["ci_high"], color=color, alpha=0.18)
            if scorer != RANDOM_CONTROL and not control.empty:
                ctl = control[control["group"] == group].sort_values("k")
                ax.plot(ctl["k"], 100 * ctl["drop_mean"], "--", color=color, lw=1)
                ax.fill_between(ctl["k"], 100 * ctl["ci_low"], 100 * ctl["ci_high"], color=color, alpha=0.07)
        ax.axhline(0, color="k", lw=0.7)
        ks = sorted(set(rows["k"]))
        if len(ks) > 1 and ks[-1] / ks[0] >= 5:
            ax.set_xscale("log")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
        ax.set_title(scorer if scorer != RANDOM_CONTROL else "random (control)", fontsize=10)
        ax.set_xlabel("k (units modified)")
        ax.grid(alpha=0.3)
    for ax in axes[len(scorers):]:
        ax.set_visible(False)
    for ax in axes[::ncol]:
        ax.set_ylabel("accuracy drop (points)")
    handles, labels = axes[0].get_legend_handles_labels()
    if not control.empty and scorers != [RANDOM_CONTROL]:
        handles += [Line2D([], [], color="k", ls="-", marker="o", ms=3), Line2D([], [], color="k", ls="--")]
        labels += ["scorer's top-k units", "k random units (control)"]
    fig.legend(handles, labels, fontsize=9, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(6, len(labels)),
               frameon=False)
    what = (
        "Drop in each group's accuracy (original minus modified) after modifying the top-k units of each "
        "scorer; solid = scorer (band: 95% CI of its mean over repeats), dashed = random units (control; band: "
        "the control_p to 1 - control_p quantiles of the random draws, 10th-90th by default: the range the verdicts "
        "compare with)."
    )
    return _render(fig, "probe_accuracy_change_vs_k", "Accuracy change per group vs k", what, prov)


@_styled
def plot_group_matrix(matrix: pd.DataFrame, prov: Provenance, value_label: str = "accuracy drop (points)",
                      name: str = "group_matrix", title: str = "Group-by-group matrix") -> ReportFigure:
    """Heatmap: units selected from group i (rows) vs accuracy change on group j (columns).

    ``matrix``: source_group, source_name, target_group, target_name, value (a fraction)."""
    _require(matrix, ["source_group", "source_name", "target_group", "target_name", "value"], "group matrix")
    pivot = matrix.pivot_table(index=["source_group", "source_name"], columns=["target_group", "target_name"],
                               values="value", aggfunc="mean")
    data = 100 * pivot.to_numpy(dtype=float)
    fig = Figure(figsize=(0.95 * data.shape[1] + 3.2, 0.55 * data.shape[0] + 1.9))
    ax = fig.subplots()
    lim = max(1.0, float(np.nanmax(np.abs(data)))) if np.isfinite(data).any() else 1.0
    im = ax.imshow(data, cmap="RdBu_r", vmin=-lim, vmax=lim)
    for (i, j), v in np.ndenumerate(data):
        ax.text(j, i, "" if np.isnan(v) else f"{v:.1f}", ha="center", va="center", fontsize=9,
                color="white" if abs(v) > 0.6 * lim else "black")
    ax.set_xticks(range(data.shape[1]), [f"g{g} {n}" for g, n in pivot.columns], rotation=30, ha="right")
    ax.set_yticks(range(data.shape[0]), [f"g{g} {n}" for g, n in pivot.index])
    ax.set_xlabel("accuracy measured on group")
    ax.set_ylabel("units selected from group")
    fig.colorbar(im, ax=ax, label=value_label, shrink=0.8)
    what = f"Rows: the group whose hardest examples selected the units; columns: the group evaluated; cell: {value_label}."
    return _render(fig, name, title, what, prov)


@_styled
def plot_cumulative_share(scores: pd.DataFrame, prov: Provenance, null: pd.DataFrame | None = None) -> ReportFigure:
    """Cumulative share of the total unit-level memorisation held by the top units (log x axis).

    ``scores``: unit, score (one row per unit; negative scores count as zero in the share).
    ``null`` (optional): fraction_of_units, null_mean, null_lo, null_hi (e.g. a sign-flip null)."""
    _require(scores, ["unit", "score"], "cumulative memorisation share")
    s = np.sort(np.clip(scores["score"].to_numpy(dtype=float), 0, None))[::-1]
    total = s.sum()
    share = np.cumsum(s) / total if total > 0 else np.zeros_like(s)
    frac = np.arange(1, len(s) + 1) / len(s)
    fig = Figure(figsize=(6.4, 3.8))
    ax = fig.subplots()
    if null is not None and not null.empty:
        ax.fill_between(100 * null["fraction_of_units"], 100 * null["null_lo"], 100 * null["null_hi"],
                        color="grey", alpha=0.25, label="sign-flip null, 95%")
        ax.plot(100 * null["fraction_of_units"], 100 * null["null_mean"], color="grey", lw=1, ls="--",
                label="sign-flip null, mean")
    ax.plot(100 * frac, 100 * share, color=_PALETTE[1], lw=2, label="observed, largest score first")
    ax.plot(100 * frac, 100 * frac, "k:", lw=1, label="evenly spread")
    for pct in (1, 10):
        n = max(1, int(np.ceil(len(s) * pct / 100)))
        val = 100 * share[n - 1] if total > 0 else 0.0
        ax.plot([100 * n / len(s)], [val], "ko", ms=4)
        ax.annotate(f"top {pct}%: {val:.0f}%", (100 * n / len(s), val), textcoords="offset points",
                    xytext=(6, -14 if pct == 10 else 6), fontsize=9)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlim(100 / len(s) if len(s) else 0.1, 100)
    ax.set_xlabel("share of units (%, log scale)")
    ax.set_ylabel("share of total positive score (%)")
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
    what = (
        f"Cumulative share of the unit-level memorisation score (pooled minority train-accuracy drop minus "
        f"held-out drop when the unit alone is zeroed) over {len(s)} units; positive scores only."
    )
    if total <= 0:
        what += " No unit has a positive score."
    return _render(fig, "cumulative_memorization_share", "Cumulative memorisation share over units", what, prov)


@_styled
def plot_layer_memorization(layers: pd.DataFrame, prov: Provenance) -> ReportFigure:
    """Each layer's share of the total positive memorisation score next to its share of the units.

    ``layers``: layer, share, uniform_share[, units] (fractions), in network order."""
    _require(layers, ["layer", "share", "uniform_share"], "per-layer memorisation")
    fig = Figure(figsize=(6.2, 0.42 * len(layers) + 1.7))
    ax = fig.subplots()
    y = np.arange(len(layers))[::-1]
    h = 0.38
    ax.barh(y + h / 2, 100 * layers["share"].fillna(0).to_numpy(dtype=float), h, color=_PALETTE[0],
            label="share of positive score")
    ax.barh(y - h / 2, 100 * layers["uniform_share"].to_numpy(dtype=float), h, color="#cccccc",
            label="share of units")
    units = layers["units"] if "units" in layers else [None] * len(layers)
    ax.set_yticks(y, [f"{l} ({int(n)})" if n is not None else str(l) for l, n in zip(layers["layer"], units)])
    ax.set_xlabel("%")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2, frameon=False)
    what = ("Each layer's share of the total positive unit-level memorisation score next to its share of the units "
            "(number of units in brackets), input first. A layer holding far more than its share of units "
            "concentrates memorisation.")
    return _render(fig, "layer_memorization", "Per-layer memorisation", what, prov)


@_styled
def plot_algorithm_comparison(comparison: pd.DataFrame, prov: Provenance) -> ReportFigure:
    """Algorithms side by side, mean +- sd over seeds, one bar group per metric.

    ``comparison``: algorithm, metric, mean, std, n_seeds (values are fractions)."""
    _require(comparison, ["algorithm", "metric", "mean", "std"], "algorithm comparison")
    algorithms = list(dict.fromkeys(comparison["algorithm"]))
    metrics = list(dict.fromkeys(comparison["metric"]))
    fig = Figure(figsize=(min(8.0, max(5.0, 0.45 * len(algorithms) * len(metrics) + 2.0)), 3.9))
    ax = fig.subplots()
    width = 0.8 / len(metrics)
    for m_i, metric in enumerate(metrics):
        part = comparison[comparison["metric"] == metric].set_index("algorithm").reindex(algorithms)
        x = np.arange(len(algorithms)) + (m_i - (len(metrics) - 1) / 2) * width
        bars = ax.bar(x, 100 * part["mean"], width, yerr=_error_bars(part["std"]), capsize=3,
                      color=_PALETTE[m_i % len(_PALETTE)], label=metric)
        ax.bar_label(bars, fmt="%.1f", fontsize=9, padding=2, label_type="center", rotation=90,
                     color="white" if m_i % len(_PALETTE) in (0, 1, 6) else "black")
    ax.set_xticks(np.arange(len(algorithms)), algorithms, rotation=20, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    n = comparison["n_seeds"].max() if "n_seeds" in comparison else None
    spread = ("one seed, so no error bars" if n == 1 else
              f"error bar = sd over {int(n)} seeds" if n is not None else "error bar = sd over seeds")
    what = f"Algorithms compared; bar = mean, {spread}."
    return _render(fig, "algorithm_comparison", "Algorithm comparison", what, prov)


@_styled
def plot_example_grid(images: np.ndarray, labels: Sequence[str], prov: Provenance, title: str,
                      name: str = "most_memorized_examples", what: str = "") -> ReportFigure:
    """A grid of images (uint8 N x C x H x W or N x H x W) with a label under each."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, None]
    if len(images) == 0:
        raise ValueError("example grid: no images")
    n = len(images)
    ncol = min(8, n)
    nrow = int(np.ceil(n / ncol))
    fig = Figure(figsize=(1.3 * ncol, 1.75 * nrow + 0.3))
    axes = fig.subplots(nrow, ncol, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, img, label in zip(axes, images, labels):
        chw = img.transpose(1, 2, 0)
        ax.imshow(chw[..., 0] if chw.shape[2] == 1 else chw, cmap="gray" if chw.shape[2] == 1 else None,
                  interpolation="nearest")
        ax.set_title(label, fontsize=9)
    return _render(fig, name, title, what or title + ".", prov)
