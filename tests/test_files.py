"""Written files: the umask's mode, escaped Markdown, multi-file outputs as checked sets."""

import os
import stat

import pandas as pd
import pytest

from spurmem.fileset import check_set, write_set
from spurmem.record import write_json_atomic, write_text_atomic
from spurmem.report.html import Report, Section, render_markdown
from spurmem.report.tables import ReportTable, to_markdown


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_get_the_umask_mode(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        a = write_text_atomic(tmp_path / "report.md", "x")
        b = write_json_atomic(tmp_path / "sub" / "run.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(a.stat().st_mode) == mode and stat.S_IMODE(b.stat().st_mode) == mode


def test_markdown_escapes_html_from_run_and_group_names():
    evil = "<img src=x onerror=alert(1)>"
    table = ReportTable("runs", f"Runs {evil}", f"caption {evil}",
                        pd.DataFrame({"name": [evil], f"g0 {evil}": [0.5]}))
    text = to_markdown(table)
    report = Report(title=f"t {evil}", verdicts=[], sections=[Section(f"s {evil}", intro=evil, notes=[evil])],
                    runs=[evil], setting=f"Data: {evil}")
    text += render_markdown(report)
    assert "<img" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text


def test_a_set_is_whole_pending_or_mixed(tmp_path):
    files = {"units_ranked.csv": "unit,score\na,1\n", "units_summary.json": "{}\n", "fig/c.png": b"\x89PNG"}
    write_set(tmp_path, "units", files)
    assert check_set(tmp_path, "units") is None
    (tmp_path / "units_ranked.csv").write_text("unit,score\nb,2\n")  # a later command's file
    assert "mixed set (units_ranked.csv changed" in check_set(tmp_path, "units")
    write_set(tmp_path, "units", files)
    (tmp_path / "fig" / "c.png").unlink()
    assert "c.png missing" in check_set(tmp_path, "units")
    assert check_set(tmp_path / "legacy", "units") is None  # written before manifests: accepted
