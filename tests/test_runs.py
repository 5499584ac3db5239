"""`spurmem runs` and the run-directory readers, on fabricated runs in the contract format."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from runs_fixture import make_run
from spurmem.cli import main
from spurmem.report.runs import RunDirError, find_runs, group_history, headline, read_run, runs_table


@pytest.fixture()
def runs_root(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "erm-s0", "erm", 0, epochs=3)
    make_run(root, "erm-s1", "erm", 1, epochs=3)
    make_run(root / "compare", "framework-s0", "framework", 0, epochs=2, status="running")
    return root


def test_find_runs_walks_nested_folders_but_not_run_parts(runs_root):
    (runs_root / "erm-s0" / "checkpoints" / "fake").mkdir(parents=True)
    (runs_root / "erm-s0" / "checkpoints" / "fake" / "run.json").write_text("{}")
    found = [p.name for p in find_runs(runs_root)]
    assert found == ["framework-s0", "erm-s0", "erm-s1"]


def test_headline_reads_the_selected_epoch(runs_root):
    run = read_run(runs_root / "erm-s0")
    sel = run.selection["epoch"]
    row = next(r for r in run.history if r["epoch"] == sel)
    head = headline(run)
    assert head["selected_epoch"] == sel
    assert head["test_wga"] == pytest.approx(row["test/worst_group_accuracy"])
    gaps = [t["accuracy"] - s["accuracy"] for t, s in zip(row["groups"]["train"], row["groups"]["test"])]
    assert head["max_memorization_gap"] == pytest.approx(max(gaps))


def _record_process(run_dir, pid, host):
    info = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**info, "pid": pid, "host": host}))


def test_running_run_shows_its_last_epoch(runs_root):
    run = runs_root / "compare" / "framework-s0"
    _record_process(run, os.getpid(), socket.gethostname())  # this process is alive
    assert headline(read_run(run))["status"] == "running (epoch 2)"


def test_a_killed_run_is_not_shown_as_running(runs_root):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    run = runs_root / "compare" / "framework-s0"
    _record_process(run, gone.pid, socket.gethostname())
    assert headline(read_run(run))["status"] == "killed (epoch 2)"
    _record_process(run, gone.pid, "another-host")  # cannot be checked from here
    assert headline(read_run(run))["status"] == "unknown (epoch 2, on host another-host)"


def test_a_running_run_without_a_pid_is_unknown(runs_root):
    assert headline(read_run(runs_root / "compare" / "framework-s0"))["status"] == "unknown (epoch 2, no pid recorded)"


def test_runs_filter_and_sort(runs_root, capsys):
    from spurmem.report.runs import select_runs

    table = runs_table([runs_root])
    by_wga = select_runs(table, sort="test_wga", reverse=True)
    assert list(by_wga["test_wga"]) == sorted(table["test_wga"], reverse=True)
    assert list(select_runs(table, status="complete")["name"]) == ["erm-s0", "erm-s1"]
    assert list(select_runs(table, algorithm="framework")["name"]) == ["framework-s0"]
    assert main(["runs", str(runs_root), "--status", "unknown", "--sort", "name"]) == 0
    out = capsys.readouterr().out
    assert "framework-s0" in out and "erm-s0" not in out
    assert main(["runs", str(runs_root), "--sort", "test_wgaa"]) == 2
    assert "did you mean 'test_wga'" in capsys.readouterr().err


def test_group_history_is_tidy(runs_root):
    hist = group_history(read_run(runs_root / "erm-s1"))
    assert len(hist) == 3 * 3 * 4  # epochs x splits x groups
    assert set(hist["split"]) == {"train", "val", "test"}
    assert hist.groupby(["epoch", "split", "group"]).size().max() == 1


def test_malformed_metrics_line_is_named(tmp_path):
    run = make_run(tmp_path, "bad", epochs=2)
    with (run / "metrics.jsonl").open("a") as fh:
        fh.write("{not json\n")
    with pytest.raises(RunDirError, match=r"metrics.jsonl:3"):
        read_run(run)


def test_not_a_run_dir(tmp_path):
    with pytest.raises(RunDirError, match="no run.json"):
        read_run(tmp_path)


def test_runs_command_lists_every_run(runs_root, tmp_path, capsys):
    csv = tmp_path / "runs.csv"
    assert main(["runs", str(runs_root), "--csv", str(csv)]) == 0
    out = capsys.readouterr().out
    for name in ("erm-s0", "erm-s1", "framework-s0"):
        assert name in out
    table = runs_table([runs_root])
    assert csv.read_text().splitlines()[0].startswith("name,status")
    assert len(csv.read_text().splitlines()) == 1 + len(table) == 4


def test_runs_command_missing_dir_is_a_clean_error(tmp_path, capsys):
    assert main(["runs", str(tmp_path / "nope")]) == 2
    assert "no such directory" in capsys.readouterr().err


def test_record_command_writes_start_and_end(tmp_path):
    from spurmem.record import read_records, record_command

    with pytest.raises(RuntimeError):
        with record_command(tmp_path, "probe", config={"k": [1, 2]}, seeds=3) as rec:
            with rec.timed("work"):
                pass
            raise RuntimeError("boom")
    with record_command(tmp_path, "report", config={"out": "x"}) as rec:
        rec.outputs.append("report.html")
    records = read_records(tmp_path)
    assert [r["command"] for r in records] == ["probe", "report"]
    assert records[0]["status"] == "failed" and "boom" in records[0]["error"]
    assert records[0]["seeds"] == [3] and "work" in records[0]["timings"]
    assert records[1]["status"] == "complete" and records[1]["outputs"] == ["report.html"]
    env = records[1]["environment"]
    assert env["spurmem_version"] and env["host"] and env["torch_version"]
    assert env["pid"] == os.getpid()  # lets `spurmem runs` tell a killed command from a running one
    assert json.loads(json.dumps(records[1]))  # plain JSON all the way down


def test_tracking_scalars_cover_every_metric(runs_root):
    from spurmem.report.tracking import scalars

    run = read_run(runs_root / "erm-s0")
    names = {(e, n) for e, n, _ in scalars(run)}
    assert (1, "test/worst_group_accuracy") in names and (3, "val/acc_g2") in names
    assert (2, "terms/ce") in names and not any(n == "groups" for _, n in names)


@pytest.mark.parametrize("backend,flag", [("tensorboard", "--tensorboard"), ("mlflow", "--mlflow")])
def test_tracking_export_without_the_package_is_a_clean_error(runs_root, tmp_path, capsys, backend, flag):
    from spurmem.report.tracking import available

    if available(backend):
        pytest.skip(f"{backend} is installed")
    assert main(["runs", str(runs_root), flag, str(tmp_path / "x")]) == 2
    assert f"{backend} is not installed" in capsys.readouterr().err


def test_tensorboard_export_when_installed(runs_root, tmp_path):
    pytest.importorskip("tensorboard")
    from spurmem.report.tracking import export_tensorboard

    export_tensorboard([read_run(runs_root / "erm-s0")], tmp_path / "tb")
    assert list((tmp_path / "tb" / "erm-s0").glob("events.out.tfevents.*"))


def test_the_lock_owner_decides_when_spurmem_locks_is_there(runs_root, monkeypatch):
    import types

    run = runs_root / "compare" / "framework-s0"
    _record_process(run, 2 ** 22 + 12345, socket.gethostname())  # no such process
    fake = types.ModuleType("spurmem.locks")
    fake.lock_owner = lambda folder: {"pid": os.getpid(), "host": socket.gethostname(), "command": "train"}
    monkeypatch.setitem(sys.modules, "spurmem.locks", fake)
    assert headline(read_run(run))["status"] == "running (epoch 2)"
