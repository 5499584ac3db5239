"""`spurmem report` builds a self-contained report from fabricated runs in the contract format."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import pytest
from PIL import Image

from runs_fixture import make_comparison, make_memorization, make_probe
from spurmem.cli import main

EXPECTED_FIGURES = [
    "group_accuracy_over_epochs",
    "memorization_gap",
    "algorithm_comparison",
    "probe_accuracy_change_vs_k",
    "group_matrix",
    "cumulative_memorization_share",
    "layer_memorization",
    "most_memorized_examples",
]
EXPECTED_TABLES = ["verdicts", "runs", "memorization_gap", "comparison", "comparison_per_run", "probe_claims",
                   "probe_verdicts", "memorization_layers", "memorization_top_units", "memorization_examples_groups"]


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    runs = make_comparison(root / "demo", seeds=(0, 1))
    make_probe(runs / "runs" / "erm-s0")
    make_memorization(runs / "runs" / "erm-s0")
    assert main(["report", str(runs), "--out", str(root / "out")]) == 0
    return root / "out"


def _embedded_pngs(html: str) -> dict[str, bytes]:
    found = re.findall(r'<figure id="figure-([\w-]+)"><img alt="[^"]*" src="data:image/png;base64,([^"]+)"', html)
    return {name: base64.b64decode(data) for name, data in found}


def test_html_embeds_every_figure_as_a_valid_png(report_dir):
    html = (report_dir / "report.html").read_text()
    pngs = _embedded_pngs(html)
    for name in EXPECTED_FIGURES:
        assert name in pngs, f"figure {name} missing from the HTML"
        img = Image.open(io.BytesIO(pngs[name]))
        img.verify()
        assert img.format == "PNG" and img.size[0] >= 300 and img.size[1] >= 200
        assert len(pngs[name]) > 10_000, f"{name} is suspiciously small"
        assert (report_dir / "figures" / f"{name}.png").read_bytes() == pngs[name]


def test_every_figure_caption_states_how_it_was_made(report_dir):
    html = (report_dir / "report.html").read_text()
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", html, flags=re.S)
    assert len(captions) == len(_embedded_pngs(html)) >= len(EXPECTED_FIGURES)
    for cap in captions:
        for word in ("Split:", "Seeds:", "Selection:", "Average:"):
            assert word in cap, f"caption lacks {word!r}: {cap[:120]}"
    assert "Seeds: 0, 1 (n=2)" in html  # two ERM seeds pooled in one figure


def test_tables_exist_in_html_csv_and_markdown(report_dir):
    html = (report_dir / "report.html").read_text()
    md = (report_dir / "report.md").read_text()
    for name in EXPECTED_TABLES:
        assert f'id="table-{name}"' in html
        csv = (report_dir / "tables" / f"{name}.csv").read_text().splitlines()
        assert len(csv) >= 2
        assert (report_dir / "tables" / f"{name}.md").read_text().count("\n|") >= 2
    assert md.index("Verdicts on the claims") < md.index("\n## ")


def test_report_opens_with_the_verdicts(report_dir):
    html = (report_dir / "report.html").read_text()
    body = html[html.index("<body>"):]
    assert body.index("<section") == body.index('<section id="verdicts"')
    for claim in ("Sensitivity", "Group specificity", "Localisation", "Framework"):
        assert claim in body[: body.index("<nav>")]


def test_the_verdicts_point_to_the_findings_on_other_models(report_dir):
    """A reader of one model's verdicts is pointed at what the same claims gave elsewhere."""
    from pathlib import Path

    findings = Path(__file__).resolve().parents[1] / "docs" / "findings.md"
    html = (report_dir / "report.html").read_text()
    caption = html[html.index('<table id="table-verdicts"'):html.index("</section>")]
    assert f'<a href="{findings.as_uri()}">docs/findings.md</a>' in caption
    md = (report_dir / "report.md").read_text()
    assert str(findings) in md[:md.index("\n## ")]


def test_probe_verdicts_reach_the_top_of_the_report(report_dir):
    verdicts = (report_dir / "tables" / "verdicts.csv").read_text()
    assert "Sensitivity (docs/method.md §5.1)" in verdicts and "not supported" in verdicts
    assert "Group specificity (docs/method.md §5.2)" in verdicts and ",supported," in verdicts
    assert "class collapse: 2" in verdicts  # the outcome names what the probe saw
    assert "Localisation (docs/method.md §5.3)" in verdicts and "concentrated beyond the null" in verdicts


def test_report_is_self_contained(report_dir):
    html = (report_dir / "report.html").read_text()
    assert "<script" not in html
    assert not re.search(r'src="(?!data:)', html), "the report must not load external files"


def test_report_of_missing_dir_is_a_clean_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    assert "no such directory" in capsys.readouterr().err


def test_probe_curves_show_minority_selected_panels_and_the_control(tmp_path):
    from runs_fixture import make_run
    from spurmem.report.inputs import find_probes, probe_curves, probe_matrix
    from spurmem.report.runs import read_run

    run = make_run(tmp_path, "erm-s0")
    make_probe(run, ks=(1, 3))
    probe = find_probes(read_run(run))[0]
    curves = probe_curves(probe, "zero")
    assert set(curves["scorer"]) == {"group-gradient (units from g1 pullover/water)",
                                     "group-gradient (units from g2 coat/land)", "weight-norm", "random"}
    assert set(curves["k"]) == {1, 3} and len(curves) == 4 * 2 * 4  # panels x k x groups, train split only
    control = curves[curves["scorer"] == "random"]
    assert ((control["ci_high"] - control["ci_low"]) > 0).all()  # repeated: a CI band
    matrix, k = probe_matrix(probe, "zero")
    assert k == 3 and len(matrix) == 16
    diag = matrix[matrix["source_group"] == matrix["target_group"]]["value"].mean()
    off = matrix[matrix["source_group"] != matrix["target_group"]]["value"].mean()
    assert diag > off  # the fixture plants a diagonal; the pivot must keep rows and columns apart


def test_runs_of_different_datasets_are_never_pooled(tmp_path):
    from runs_fixture import make_run
    from spurmem.report.build import assemble_report

    make_run(tmp_path, "a-erm", "erm", 0, dataset="fashion-waterbirds")
    make_run(tmp_path, "b-erm", "erm", 1, dataset="colored-digits")
    report = assemble_report([tmp_path])
    names = {f.name for f in report.figures}
    assert {"group_accuracy_over_epochs", "group_accuracy_over_epochs_colored_digits___small_cnn",
            "memorization_gap", "memorization_gap_colored_digits___small_cnn"} <= names
    captions = [f.caption for f in report.figures if f.name.startswith("group_accuracy_over_epochs")]
    assert all("(n=1)" in c for c in captions)  # one seed each, not two pooled
    assert "colored-digits" in report.setting and "fashion-waterbirds" in report.setting


def test_report_goes_into_the_folder_given_and_never_replaces_one(tmp_path, monkeypatch, capsys):
    from runs_fixture import make_run

    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    a, b = make_run(tmp_path / "runs", "erm-s0"), make_run(tmp_path / "runs", "erm-s1", seed=1)
    assert main(["report", str(tmp_path / "runs")]) == 0
    first = tmp_path / "runs" / "report" / "report.html"
    assert capsys.readouterr().out.strip() == str(first) and first.is_file()
    assert not (elsewhere / "report").exists(), "nothing is written into the current directory"
    before = first.read_bytes()
    assert main(["report", str(tmp_path / "runs")]) == 0  # a second report: a new folder beside the first
    second = Path(capsys.readouterr().out.strip())
    assert second.parent.name.startswith("report-") and second.parent.parent == tmp_path / "runs"
    assert first.read_bytes() == before
    assert main(["report", str(a), str(b)]) == 0  # several runs: a named folder where they live
    assert Path(capsys.readouterr().out.strip()).parent == tmp_path / "runs" / "report-erm-s0+erm-s1"
    out = tmp_path / "mine"
    assert main(["report", str(a), "--out", str(out)]) == 0
    assert main(["report", str(a), "--out", str(out)]) == 2  # an explicit folder is not replaced silently
    assert "--overwrite" in capsys.readouterr().err
    assert main(["report", str(a), "--out", str(out), "--overwrite"]) == 0
