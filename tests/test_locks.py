"""Folder locks: a second process fails at once naming the owner; a dead owner's lock is taken over."""

import json
import os
import signal
import socket
import time

import pytest

from spurmem.cli import main
from spurmem.errors import RunLockedError
from spurmem.locks import LOCK_FILE, acquire, folder_lock, holds, lock_owner, release
from spurmem.record import read_records


def hold_in_child(folder, command="train other"):
    """Fork a process that takes ``folder``'s lock and sleeps; returns its pid once it holds it."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            acquire(folder, command)
            os.write(w, b"1")
            time.sleep(120)
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"1"
    os.close(r)
    return pid


def kill(pid):
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def test_second_process_fails_at_once_naming_owner_then_takes_over_after_kill_9(tmp_path):
    folder = tmp_path / "run"
    pid = hold_in_child(folder)
    try:
        owner = lock_owner(folder)
        assert owner["pid"] == pid and owner["host"] == socket.gethostname() and owner["command"] == "train other"
        t0 = time.perf_counter()
        with pytest.raises(RunLockedError, match=rf"pid {pid} on {socket.gethostname()} \(`train other`"):
            acquire(folder, "train mine")
        assert time.perf_counter() - t0 < 1.0  # at once, no waiting
        assert not holds(folder)
    finally:
        kill(pid)
    assert lock_owner(folder) is None  # the kernel dropped the dead owner's lock: stale
    with folder_lock(folder, "train mine"):
        assert lock_owner(folder)["pid"] == os.getpid()
        assert json.loads((folder / LOCK_FILE).read_text())["command"] == "train mine"
    assert not (folder / LOCK_FILE).exists() and lock_owner(folder) is None


def test_stale_lock_file_of_a_dead_pid_is_taken_over_and_reentrant(tmp_path):
    folder = tmp_path / "cmp"
    folder.mkdir()
    (folder / LOCK_FILE).write_text(json.dumps({"pid": 999999, "host": "elsewhere", "command": "compare",
                                                "started": "2020-01-01T00:00:00+00:00"}))
    assert lock_owner(folder) is None
    with folder_lock(folder, "compare"):
        with folder_lock(folder, "train"):  # a stage called by a command on the same folder
            assert holds(folder)
        assert holds(folder) and (folder / LOCK_FILE).exists()  # the inner release keeps the outer lock
        assert json.loads((folder / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert not holds(folder)
    release(folder)  # an unmatched release is harmless


def test_taking_a_lock_removes_partial_writes_of_a_killed_owner(tmp_path):
    folder = tmp_path / "run"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "inner").mkdir()
    partial = [folder / ".run.json.x1abcdef.tmp", folder / "checkpoints" / ".epoch_0001.json.y2_12345.tmp"]
    for p in partial:
        p.write_text("{")
    kept = [folder / "inner" / ".run.json.busy1234.tmp",  # a sub-folder with a writer of its own is left alone
            folder / ".editor-swap.tmp"]  # not a name an atomic write makes
    (folder / "inner" / LOCK_FILE).write_text("{}")
    for p in kept:
        p.write_text("x")
    with folder_lock(folder, "train"):
        assert not any(p.exists() for p in partial)
        assert all(p.exists() for p in kept)


SHAPES = ["dataset=synthetic-shapes", "dataset_params.n_train=48", "dataset_params.n_val=16",
          "dataset_params.n_test=16", "dataset_params.size=8", "model_params.width=0.25", "batch_size=16",
          "device=cpu", "eval_splits=[train,val,test]"]


@pytest.mark.parametrize("argv", [
    lambda d: ["train", "--run-dir", str(d), *SHAPES, "epochs=1", "--no-progress"],
    lambda d: ["compare", f"out_dir={d}", "algorithms=[erm]", "seeds=[0]", "epochs=1", *[
        s for s in SHAPES if s.startswith("dataset")], "model_params.width=0.25", "train.device=cpu", "--no-progress"],
], ids=["train", "compare"])
def test_cli_refuses_a_folder_another_process_writes(tmp_path, capsys, argv):
    folder = tmp_path / "busy"
    pid = hold_in_child(folder, "train busy")
    try:
        assert main(argv(folder)) == 2
    finally:
        kill(pid)
    err = capsys.readouterr().err
    assert f"is in use by pid {pid} on {socket.gethostname()}" in err and "`train busy`" in err
    assert not (folder / "run.json").exists() and not (folder / "runs").exists()  # nothing was written


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("locks") / "run"
    assert main(["train", "--run-dir", str(run), *SHAPES, "epochs=1", "--no-progress"]) == 0
    return run


@pytest.mark.parametrize("sub,argv", [
    ("memorization", ["memorization", "units", "{run}", "--null-draws", "5", "--device", "cpu"]),
    ("probes/p", ["probe", "{run}", "name=p", "scorers=[weight-norm]", "k=[1]", "interventions=[zero]",
                  "repeats=1", "device=cpu", "--no-progress"]),
], ids=["memorization units", "probe"])
def test_cli_refuses_an_output_folder_another_process_writes(trained, capsys, sub, argv):
    pid = hold_in_child(trained / sub, "other")
    try:
        assert main([a.replace("{run}", str(trained)) for a in argv]) == 2
    finally:
        kill(pid)
    assert f"is in use by pid {pid}" in capsys.readouterr().err
    assert not list((trained / sub).glob("*.csv"))
    assert [r["command"] for r in read_records(trained)] == ["train"]  # refused before recording anything
