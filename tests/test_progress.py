"""The one progress reporter: plain lines off a terminal (start, rate + ETA, end), silence when off,
nesting on a terminal; a scan's progress through a pipe; the limits of `memorization units`."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spurmem import progress
from spurmem.progress import Progress
from spurmem.train import TrainConfig, train

TINY = {"dataset": "synthetic-shapes", "dataset_params": {"n_train": 200, "n_val": 80, "n_test": 80, "size": 12},
        "model": "small-cnn", "model_params": {"widths": [4, 8, 8, 8]}, "batch_size": 50, "eval_batch_size": 200}


@pytest.fixture(autouse=True)
def _defaults(monkeypatch):
    monkeypatch.delenv("SPURMEM_NO_PROGRESS", raising=False)
    monkeypatch.delenv("SPURMEM_PROGRESS_EVERY", raising=False)
    progress.reset()
    yield
    progress.reset()


def _plain(**kw) -> tuple[Progress, io.StringIO]:
    out = io.StringIO()
    return Progress("stage x", 4, unit="jobs", stream=out, terminal=False, **kw), out


def test_plain_lines_say_start_cost_rate_eta_and_end():
    rep, out = _plain(every=0, cost="4 jobs x 10 examples")
    with rep:
        for k in range(4):
            rep.advance(1, info=f"job {k + 1}")
    lines = out.getvalue().splitlines()
    assert lines[0] == "[stage x] start: 0/4 jobs; cost: 4 jobs x 10 examples"
    middle = lines[1:-1]
    assert len(middle) == 4 and middle[0].startswith("[stage x] 1/4 jobs (25.0%), ")
    assert all(" jobs/" in m and "elapsed " in m and "ETA " in m for m in middle)
    assert middle[-1].endswith("- job 4")
    assert lines[-1].startswith("[stage x] done: 4/4 jobs in ")


def test_lines_are_spaced_by_the_interval_and_a_short_stage_says_stopped():
    rep, out = _plain(every=3600)
    with rep:
        for _ in range(3):
            rep.advance(1)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[-1].startswith("[stage x] stopped at 3/4 jobs")


def test_off_by_environment_or_configure_and_interval_from_environment(monkeypatch):
    monkeypatch.setenv("SPURMEM_NO_PROGRESS", "1")
    rep, out = _plain(every=0)
    rep.advance(4)
    rep.log("hello")
    rep.close()
    assert out.getvalue() == ""
    monkeypatch.setenv("SPURMEM_NO_PROGRESS", "0")
    monkeypatch.setenv("SPURMEM_PROGRESS_EVERY", "7")
    assert progress.settings() == (True, 7.0)
    progress.configure(enabled=False, every=2)
    assert progress.settings() == (False, 2.0)
    monkeypatch.setenv("SPURMEM_PROGRESS_EVERY", "soon")
    progress.reset()
    with pytest.raises(progress.SpurmemError, match="SPURMEM_PROGRESS_EVERY"):
        progress.settings()


def test_terminal_bars_nest_in_one_display():
    out = io.StringIO()
    with Progress("outer", 2, unit="jobs", stream=out, terminal=True, cost="two jobs") as outer:
        for _ in range(2):
            with Progress("inner", 3, stream=out, terminal=True) as inner:
                inner.advance(3)
            outer.advance(1)
    assert progress._LIVE == {"bar": None, "users": 0}
    text = out.getvalue()
    assert "[outer] cost: two jobs" in text and "inner" in text


def test_the_options_are_taken_before_or_after_any_command_and_last_only_for_the_command():
    from spurmem.cli import build_parser

    parser = build_parser()
    before = parser.parse_args(["--no-progress", "--progress-every", "3", "memorization", "units", "RUN"])
    after = parser.parse_args(["train", "--progress-every", "0"])
    assert (before.no_progress, before.progress_every, after.progress_every) == (True, 3.0, 0.0)
    assert not hasattr(after, "no_progress")  # not given: the environment's setting stands
    with progress.options(before):
        assert progress.settings() == (False, 3.0)
    assert progress.settings() == (True, progress.DEFAULT_EVERY)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, shapes):
    cfg = TrainConfig(name="tiny", seed=0, epochs=1, **TINY)
    return train(cfg, run_dir=tmp_path_factory.mktemp("runs") / "tiny", dataset=shapes, progress=False).run_dir


def _units_cli(run_dir: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    return subprocess.run([sys.executable, "-m", "spurmem.cli", "memorization", "units", str(run_dir), "--screen",
                           "--null-draws", "20", "--device", "cpu", "--out", str(out), *extra],
                          capture_output=True, text=True, env=env, timeout=300)


def test_a_scan_through_a_pipe_prints_start_eta_and_end_and_limits_are_recorded(tiny_run, tmp_path):
    done = _units_cli(tiny_run, tmp_path / "a", "--progress-every", "0", "--layers", "stages.2.*", "stages.3*",
                      "--examples-per-group", "5")
    assert done.returncode == 0, done.stderr
    err = done.stderr.splitlines()
    assert any(line.startswith("[memorization units] start: 0/3 scans; cost: ") and "unit-example pairs" in line
               for line in err)
    screen = [line for line in err if line.startswith("[scan train (zero): screen]")]
    assert screen[0].startswith("[scan train (zero): screen] start:")
    assert any("ETA " in line for line in screen[1:-1])
    assert screen[-1].startswith("[scan train (zero): screen] done:")
    assert any(line.startswith("[scan train (zero): calibration] done:") for line in err)
    summary = json.loads((tmp_path / "a" / "units_summary.json").read_text())
    limits = summary["limits"]
    layers = {layer for layer in limits["layers"]}
    assert layers == {"stages.2.*", "stages.3*"} and limits["limited"]
    assert 0 < limits["units_scanned"] == summary["units"] < limits["units_candidate"]
    groups = 4
    assert limits["examples_scanned"] == {"train": 5 * groups, "test": 5 * groups, "val": 5 * groups}
    assert len(limits["example_indices"]["train"]) == 5 * groups
    assert "LIMITED scan" in summary["statement"]
    assert summary["screen"]["train"]["pairs"] == summary["units"] * 5 * groups


def test_no_progress_silences_a_scan_and_an_unlimited_scan_records_no_limit(tiny_run, tmp_path, capsys):
    from spurmem.cli import main

    assert main(["memorization", "units", str(tiny_run), "--screen", "--null-draws", "20", "--device", "cpu",
                 "--out", str(tmp_path / "b"), "--no-progress", "--progress-every", "0"]) == 0
    assert "[scan" not in capsys.readouterr().err
    assert progress.settings()[0]  # the command's setting ends with it
    full = json.loads((tmp_path / "b" / "units_summary.json").read_text())
    assert full["units"] == full["limits"]["units_candidate"] and not full["limits"]["limited"]
    assert "LIMITED" not in full["statement"]


def test_an_unknown_layer_pattern_is_an_error_naming_the_layers(shapes):
    from spurmem.config import ConfigError
    from spurmem.memorization import unit_memorization
    from spurmem.models import build_model

    model = build_model("small-cnn", n_classes=shapes.n_classes, widths=[4, 8, 8, 8])
    with pytest.raises(ConfigError, match="'nope' match.*stages.0.conv"):
        unit_memorization(model, shapes, device="cpu", layers=["nope"], null_draws=5)


def test_the_report_says_beside_the_concentration_figures_that_the_scan_was_limited(tmp_path):
    from runs_fixture import make_memorization, make_run
    from spurmem.report.runs import read_run
    from spurmem.report.sections import memorization_section

    run = make_run(tmp_path, "erm-s0")
    path = make_memorization(run) / "units_summary.json"
    summary = json.loads(path.read_text())
    assert all("LIMITED" not in f.caption for f in memorization_section([read_run(run)]).figures)
    summary["limits"] = {"limited": True, "statement": "LIMITED scan: 20 of 40 candidate units in 2 layers"}
    path.write_text(json.dumps(summary))
    captions = {f.name: f.caption for f in memorization_section([read_run(run)]).figures}
    for name in ("cumulative_memorization_share", "layer_memorization"):
        assert "LIMITED scan: 20 of 40 candidate units" in captions[name]
