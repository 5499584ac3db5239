"""`spurmem demo` end to end with a tiny override: every stage runs, the report opens with the verdicts,
and a second demo reuses every finished stage."""

from __future__ import annotations

import time

import pytest

from spurmem.cli import main

TINY = [
    "erm_epochs=2", "n_train=160", "n_eval_per_group=10", "fine_tune_epochs=1", "example_epochs=1",
    "probe={k: [1, 2], repeats: 2, scorers: [group-gradient, weight-norm]}",
]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_demo_tiny_runs_every_stage_then_reuses_them(tmp_path, capsys):
    from spurmem.config import load_config
    from spurmem.demo import DemoConfig, run_demo

    out = tmp_path / "demo"
    t0 = time.perf_counter()
    assert main(["demo", f"out_dir={out}", *TINY, "--no-progress"]) == 0
    first_seconds = time.perf_counter() - t0
    assert first_seconds < 120, f"the tiny demo took {first_seconds:.0f} s"
    printed = capsys.readouterr().out
    report = out / "report" / "report.html"
    assert f"Report: {report}" in printed.replace("\n", "")
    html = report.read_text()
    verdicts = html[html.index('id="verdicts"'): html.index("<nav>")]
    for claim in ("Sensitivity", "Group specificity", "Localisation", "Framework"):
        assert claim in verdicts
    # stages that ran must have produced a verdict, not "not tested"
    csv = (out / "report" / "tables" / "verdicts.csv").read_text().splitlines()
    tested = {line.split(" (docs/method.md")[0]: "not tested" not in line for line in csv[1:]}
    assert all(tested.values()), tested
    for name in ("group_accuracy_over_epochs", "memorization_gap", "probe_accuracy_change_vs_k", "group_matrix",
                 "algorithm_comparison", "cumulative_memorization_share", "layer_memorization",
                 "most_memorized_examples"):
        assert (out / "report" / "figures" / f"{name}.png").stat().st_size > 10_000
    assert list((out / "records").glob("*-demo.json")), "the demo writes its experiment record"

    again = run_demo(load_config(DemoConfig, None, [f"out_dir={out}", *TINY]), progress=False)
    status = {s.name: s.status for s in again.stages}
    for stage in ("erm", "probe", "scan", "examples", "compare"):
        assert status[stage] == "reused", (stage, status)
    assert status["report"] == "ran"
    assert again.report_path == report

    # another setting in the same folder would mix two demos: refused, naming the setting
    assert main(["demo", f"out_dir={out}", *TINY[1:], "erm_epochs=3", "--no-progress"]) == 2
    assert "erm_epochs: the folder has 2, given 3" in capsys.readouterr().err


def test_demo_fresh_refuses_a_folder_that_is_not_a_demo(tmp_path, capsys):
    (tmp_path / "precious.txt").write_text("keep me")
    assert main(["demo", f"out_dir={tmp_path}", "--fresh", "--no-progress"]) == 2
    assert "not a demo folder" in capsys.readouterr().err
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_demo_rejects_unknown_setting_with_a_hint(capsys):
    assert main(["demo", "erm_epoch=3"]) == 2
    assert "did you mean 'erm_epochs'" in capsys.readouterr().err


def test_a_stage_left_out_by_a_setting_says_skipped_and_threads_apply(tmp_path, monkeypatch):
    import torch

    from spurmem import demo as demo_module
    from spurmem.demo import DemoConfig, run_demo

    seen = {}

    def fake_report(d):
        seen["threads"] = torch.get_num_threads()
        d.report, d.report_path = None, tmp_path / "report.html"

    real = {s.name: s for s in demo_module._stages()}
    monkeypatch.setattr(demo_module, "_stages", lambda: [
        real["examples"], demo_module._Stage("report", "write the report", lambda d: False, fake_report)])
    before = torch.get_num_threads()
    result = run_demo(DemoConfig(out_dir=str(tmp_path / "demo"), example_models=0, threads=1), progress=False)
    status = {s.name: (s.status, s.note) for s in result.stages}
    assert status["examples"] == ("skipped", "example_models=0")
    assert seen["threads"] == 1 and torch.get_num_threads() == before
