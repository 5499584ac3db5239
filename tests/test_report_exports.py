"""Paper-ready reports: readable figures with seven algorithms, PDF/SVG and LaTeX exports, tables that
fit the page, and a reproducibility section built from what the runs recorded."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pandas as pd
import pytest

from runs_fixture import make_comparison, make_run
from spurmem.report import figures as F

SEVEN = ("erm", "erm-continue", "reweight", "groupdro", "jtt", "dfr", "spurmem")
PROV = F.Provenance("test", [0], "validation worst-group accuracy")


@pytest.fixture(scope="module")
def seven_report(tmp_path_factory):
    """A report of a one-seed comparison of seven algorithms (the fixture's fake runs), written to disk."""
    from spurmem.report.build import assemble_report
    from spurmem.report.html import write_report

    root = tmp_path_factory.mktemp("seven")
    make_comparison(root / "cmp", algorithms=SEVEN, seeds=(0,))
    report = assemble_report([root / "cmp"])
    write_report(report, root / "out")
    return report, root / "out"


@pytest.fixture()
def drawn(monkeypatch):
    """The matplotlib Figure behind each ReportFigure drawn in the test, by figure name."""
    figures = {}
    real = F._render

    def capture(fig, name, *args, **kwargs):
        figures[name] = fig
        return real(fig, name, *args, **kwargs)

    monkeypatch.setattr(F, "_render", capture)
    return figures


def test_text_is_readable_in_the_report_column(seven_report):
    report, _ = seven_report
    assert len(report.figures) >= 4
    for fig in report.figures:
        assert fig.min_text_px is not None and fig.min_text_px >= 10, (fig.name, fig.min_text_px)


def test_seven_algorithms_get_clearly_different_colours():
    from matplotlib.colors import to_rgb
    from skimage.color import deltaE_ciede2000, rgb2lab

    lab = rgb2lab(np.array([[to_rgb(F._PALETTE[i]) for i in range(len(SEVEN))]]))[0]
    closest = min(float(deltaE_ciede2000(a, b)) for a, b in itertools.combinations(lab, 2))
    assert closest >= 20, f"two of the first seven colours differ by only dE2000 {closest:.1f}"


def _gaps(seeds):
    return pd.DataFrame([{"algorithm": alg, "seed": s, "group": g, "group_name": f"g{g}",
                          "role": "minority" if g in (1, 2) else "majority", "gap": 0.1 * g + 0.01 * s}
                         for alg in SEVEN for s in seeds for g in range(4)])


@pytest.mark.parametrize("seeds,bars", [((0,), False), ((0, 1), True)])
def test_error_bars_only_with_two_or_more_seeds(drawn, seeds, bars):
    from matplotlib.container import ErrorbarContainer

    F.plot_memorization_gap(_gaps(seeds), PROV)
    comparison = pd.DataFrame({"algorithm": list(SEVEN), "metric": "test WGA", "mean": 0.4,
                               "std": 0.02 if bars else np.nan, "n_seeds": len(seeds)})
    F.plot_algorithm_comparison(comparison, PROV)
    for name in ("memorization_gap", "algorithm_comparison"):
        ax = drawn[name].axes[0]
        assert any(isinstance(c, ErrorbarContainer) for c in ax.containers) == bars, name


def test_epoch_axes_have_integer_ticks(drawn):
    hist = pd.DataFrame([{"algorithm": alg, "epoch": e, "split": s, "group": g, "group_name": f"g{g}",
                          "accuracy": 0.5, "seed": 0} for alg in SEVEN for e in (0, 1, 2) for s in ("train", "test")
                         for g in range(2)])
    F.plot_group_accuracy_over_epochs(hist[hist["algorithm"] == "erm"], PROV)
    F.plot_group_accuracy_by_algorithm(hist, PROV)
    for name in ("group_accuracy_over_epochs", "group_accuracy_over_epochs_by_algorithm"):
        for ax in (a for a in drawn[name].axes if a.get_visible()):
            lo, hi = ax.get_xlim()
            ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
            assert ticks and all(float(t).is_integer() for t in ticks), (name, ticks)


def test_figures_are_written_as_png_pdf_and_svg(seven_report):
    report, out = seven_report
    for fig in report.figures:
        assert (out / "figures" / f"{fig.name}.pdf").read_bytes().startswith(b"%PDF")
        assert b"<svg" in (out / "figures" / f"{fig.name}.svg").read_bytes()[:2000]
    md = (out / "report.md").read_text()
    assert "[PDF](figures/algorithm_comparison.pdf)" in md


def test_every_table_has_a_latex_version(seven_report):
    report, out = seven_report
    for table in [report.verdict_table(), *report.tables]:
        tex = (out / "tables" / f"{table.name}.tex").read_text()
        assert "\\begin{tabular}" in tex and "\\end{table}" in tex and f"\\label{{tab:{table.name}}}" in tex
        body = tex[tex.index("\\midrule"): tex.index("\\bottomrule")]
        ncols = tex[tex.index("\\begin{tabular}{") + 16:].split("}")[0]
        for line in body.splitlines()[1:]:  # each row has one cell per column, specials escaped
            assert line.count(" & ") == len(ncols) - 1 and re.search(r"(?<!\\)[_%#]", line) is None, line


def test_wide_and_long_tables_fold_and_every_table_scrolls_in_its_box(seven_report):
    from spurmem.report.html import Report, Section, render_html
    from spurmem.report.tables import ReportTable

    _, out = seven_report
    html = (out / "report.html").read_text()
    assert html.count("<table") == html.count('<div class="table-wrap"><table')
    wide = pd.DataFrame({f"test/metric_{i}": [0.5] for i in range(16)})  # like compare's per-run table
    long = pd.DataFrame({"unit": [f"u{i}" for i in range(40)]})
    narrow = pd.DataFrame({"a": [1], "b": [2]})
    section = Section("S", tables=[ReportTable(n, n, "", f) for n, f in (("wide", wide), ("long", long),
                                                                       ("narrow", narrow))])
    section.tables.append(ReportTable("headline", "headline", "", wide, fold=False))  # e.g. the comparison
    html = render_html(Report("r", [], [section]))

    def folded(name: str) -> bool:
        before = html[: html.index(f'id="table-{name}"')]
        return before.rfind("<details") > before.rfind("</details>")

    assert folded("wide") and folded("long") and not folded("narrow") and not folded("headline")
    assert "test/<wbr>metric_<wbr>0" in html  # long headers may wrap after / and _
    assert html.count("<table") == html.count('<div class="table-wrap"><table')


def test_reproducibility_section_from_the_recorded_runs(tmp_path):
    from spurmem.record import record_command
    from spurmem.report.build import assemble_report

    a = make_run(tmp_path / "runs", "erm-s0", seed=0)
    make_run(tmp_path / "runs", "erm-s1", seed=1)
    with record_command(a, "probe", config={"k": [1]}):
        pass
    report = assemble_report([tmp_path / "runs"])
    section = next(s for s in report.sections if s.title == "Reproducing these results")
    tables = {t.name: t for t in section.tables}
    runs = tables["reproducibility_runs"].frame
    assert list(runs["git commit"]) == ["0" * 40] * 2 and "torch 2.14.1" in runs["versions"].iloc[0]
    shared = dict(zip(tables["reproducibility_shared_settings"].frame["setting"],
                      tables["reproducibility_shared_settings"].frame["value"]))
    assert shared == {"algorithm": "erm", "epochs": "4"}
    assert list(tables["reproducibility_varying_settings"].frame["seed"]) == ["0", "1"]
    commands = tables["reproducibility_commands"].frame
    assert len(commands) == 1 and commands["recorded steps"].iloc[0] == "probe"
    assert any(f"git commit {'0' * 40}" in n for n in section.notes)
