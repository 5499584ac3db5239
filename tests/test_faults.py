"""Crash consistency: SIGKILL at several points (inside an atomic write and between writes) of train,
mitigate, probe, memorization units and compare, then resume: the results equal an uninterrupted
run. Also the half-made run folder, a resume at the final epoch and a mixed memorisation set."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from killpoints import count_writes, run_killed
from spurmem.cli import main
from spurmem.fileset import check_set
from spurmem.report.inputs import find_memorization, incomplete_sets
from spurmem.report.runs import read_run

SHAPES = ["dataset=synthetic-shapes", "dataset_params.n_train=48", "dataset_params.n_val=16",
          "dataset_params.n_test=16", "dataset_params.size=8", "model_params.width=0.25", "batch_size=16",
          "device=cpu"]
VOLATILE = ("second", "time", "started", "finished", "written", "run_dir", "path", "host", "argv", "resumed", "timing", "computed")


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("faults") / "base"
    assert main(["train", "--run-dir", str(run), *SHAPES, "epochs=2", "--no-progress"]) == 0
    return run


def _stable(obj, root: str):
    """``obj`` without timings and paths (they differ between two runs of the same command)."""
    if isinstance(obj, dict):
        return {k: _stable(v, root) for k, v in obj.items() if not any(w in k for w in VOLATILE)}
    if isinstance(obj, list):
        return [_stable(v, root) for v in obj]
    return obj.replace(root, "ROOT") if isinstance(obj, str) else obj


def _content(folder: Path, rel: str):
    path = folder / rel
    if rel.endswith(".csv"):
        frame = pd.read_csv(path)
        return frame[[c for c in frame.columns if not any(w in c for w in VOLATILE)]].to_csv(index=False)
    if rel.endswith(".json"):
        return _stable(json.loads(path.read_text()), str(folder.parent))
    if rel.endswith(".jsonl"):
        return [_stable(json.loads(line), str(folder.parent)) for line in path.read_text().splitlines()]
    return path.read_bytes()


def _no_partial_writes(folder: Path) -> None:
    assert not [p for p in folder.rglob(".*.tmp")], "temporary files left behind"
    assert not (folder / ".lock").exists()


# command -> (argv writing into folder F, argv resuming it, files compared; F is a fresh copy of the base run
# for the commands that write into a run, else a new folder)
def _train(f):
    return (["train", "--run-dir", str(f), *SHAPES, "epochs=2", "--no-progress"],
            ["train", "--run-dir", str(f), "--resume", "--no-progress"],
            ["checkpoints/epoch_0002.safetensors", "metrics.jsonl", "run.json", "predictions/val.csv"])


def _mitigate(f):
    argv = ["mitigate", str(f), "epochs=1", "--out", str(f / "mit"), "--no-progress"]
    return argv, [*argv, "--resume"], ["mit/checkpoints/epoch_0001.safetensors", "mit/metrics.jsonl"]  # run.json names its source


def _probe(f):
    argv = ["probe", str(f), "name=p", "scorers=[weight-norm]", "k=[1,2]", "interventions=[zero]", "repeats=2",
            "device=cpu", "--no-progress"]
    return argv, argv, ["probes/p/rows.csv", "probes/p/summary.csv", "probes/p/verdicts.json"]


def _units(f):
    argv = ["memorization", "units", str(f), "--null-draws", "20", "--device", "cpu"]
    return argv, argv, ["memorization/units_ranked.csv", "memorization/units_curve.csv",
                        "memorization/units_summary.json"]


def _compare(f):
    argv = ["compare", f"out_dir={f}", "algorithms=[erm,reweight]", "seeds=[0]", "epochs=1",
            *[s for s in SHAPES if s.startswith(("dataset", "model"))], "train.device=cpu", "train.batch_size=16",
            "--no-progress"]
    return argv, argv, ["comparison.csv"]


COMMANDS = {"train": (_train, False), "mitigate": (_mitigate, True), "probe": (_probe, True),
            "memorization units": (_units, True), "compare": (_compare, False)}


@pytest.mark.parametrize("command", COMMANDS)
def test_killed_twice_then_resumed_equals_an_uninterrupted_run(tmp_path, base, command):
    make, in_run = COMMANDS[command]

    def folder(name: str) -> Path:
        return Path(shutil.copytree(base, tmp_path / name)) if in_run else tmp_path / name

    ref = folder("ref")
    argv, _, files = make(ref)
    writes = count_writes(argv)
    got = folder("got")
    argv, resume, _ = make(got)
    # train: killed right after its command record (the folder no command could resume before), then
    # inside a write of the resumed run; the others: inside a write half-way, then between two writes.
    first, second = ((2, "after"), (writes // 2, "inside")) if command == "train" else \
        ((writes // 2, "inside"), (3, "after"))
    run_killed(argv, *first)
    run_killed(resume, *second)
    assert main(resume) == 0
    for rel in files:
        assert _content(got, rel) == _content(ref, rel), rel
    _no_partial_writes(got)
    if command == "memorization units":
        assert check_set(got / "memorization", "units") is None
    if command == "train":
        info = json.loads((got / "run.json").read_text())
        assert info["status"] == "complete" and info["epochs_completed"] == 2
        kept = ["epoch_0001.json", "epoch_0001.safetensors", "epoch_0002.json", "epoch_0002.safetensors"]
        assert sorted(p.name for p in (got / "resume").iterdir()) == kept  # the last epoch and its fallback


def test_resume_at_the_final_epoch_cleans_resume_state_and_says_how_far(tmp_path, base):
    run = Path(shutil.copytree(base, tmp_path / "r"))
    info = json.loads((run / "run.json").read_text())  # killed after the last epoch's marker, before its pruning
    info.update(status="running", selection=None)
    info.pop("epochs_completed")
    (run / "run.json").write_text(json.dumps(info))
    for suffix in (".json", ".safetensors"):
        shutil.copy(run / "resume" / f"epoch_0002{suffix}", run / "resume" / f"epoch_0000{suffix}")  # stale
    (run / ".metrics.jsonl.k1l2m3n4.tmp").write_text('{"epoch": ')
    assert main(["train", "--run-dir", str(run), "--resume", "--no-progress"]) == 0
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "complete" and info["epochs_completed"] == 2 and info["resumed_from"] == [2]
    kept = ["epoch_0001.json", "epoch_0001.safetensors", "epoch_0002.json", "epoch_0002.safetensors"]
    assert sorted(p.name for p in (run / "resume").iterdir()) == kept  # the last epoch and its fallback
    _no_partial_writes(run)


@pytest.mark.parametrize("mode", [[], ["--resume"], ["--overwrite"]], ids=["plain", "resume", "overwrite"])
def test_half_made_run_folder_is_started_afresh(tmp_path, base, capsys, mode):
    run = tmp_path / "half"  # what a train killed after its record and before config.yaml used to leave
    (run / "records").mkdir(parents=True)
    shutil.copy(sorted((base / "records").glob("*-train.json"))[0], run / "records" / "20250101T000000.000000Z-train.json")
    assert main(["train", "--run-dir", str(run), *SHAPES, "epochs=1", "--no-progress", *mode]) == 0
    assert json.loads((run / "run.json").read_text())["status"] == "complete"
    assert "half-made" in capsys.readouterr().err or mode == ["--overwrite"]


def test_report_leaves_out_a_memorisation_set_a_killed_rerun_mixed(tmp_path, base, capsys):
    run = Path(shutil.copytree(base, tmp_path / "m"))
    argv = ["memorization", "units", str(run), "--null-draws", "20", "--device", "cpu"]
    assert main(argv) == 0
    assert not find_memorization(read_run(run)).ranked.empty
    # a rerun with other options, killed after its new units_ranked.csv (record, pending manifest, ranked)
    run_killed(["memorization", "units", str(run), "--null-draws", "30", "--heldout", "val", "--device", "cpu"],
               3, "after")
    assert find_memorization(read_run(run)) is None
    assert any("incomplete" in p for p in incomplete_sets(read_run(run)))
    capsys.readouterr()
    assert main(["report", str(run), "--out", str(tmp_path / "rep")]) == 0
    assert "memorization" in capsys.readouterr().err
    assert "Left out: the units outputs" in (tmp_path / "rep" / "report.md").read_text()
