"""Untrusted weight, checkpoint and resume files: never unpickled, always one clear line naming the file.

Every entry point that reads weights is fed every bad payload (a malicious pickle whose ``__reduce__``
would create a marker file, a truncated file, a lying safetensors header, garbage, an empty file).
The marker must never appear, and ``spurmem`` must print one ``spurmem: error:`` line naming the
file and exit 2.
"""

from __future__ import annotations

import json
import pickle
import shutil
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as st_save

from spurmem.cli import main
from spurmem.errors import UnreadableFileError

TINY = dict(dataset="synthetic-shapes", dataset_params={"n_train": 64, "n_val": 32, "n_test": 32, "size": 8},
            model="small-cnn", model_params={"widths": [2, 4]}, batch_size=32, eval_batch_size=64,
            lr=0.01, selection="last", device="cpu")
TINY_OVERRIDES = ["dataset=synthetic-shapes", "dataset_params.n_train=64", "dataset_params.n_val=32",
                  "dataset_params.n_test=32", "dataset_params.size=8", "model=small-cnn",
                  "model_params.widths=[2,4]", "batch_size=32", "eval_batch_size=64", "device=cpu",
                  "selection=last", "epochs=1"]


class _Marker:
    """Unpickling this creates the file ``path`` (``open(path, 'w')``): proof that code ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _valid_bytes() -> bytes:
    return st_save({"w": torch.zeros(4, 4), "b": torch.ones(4)})


def _payloads(marker: Path) -> dict[str, bytes]:
    valid = _valid_bytes()
    (n,) = struct.unpack("<Q", valid[:8])
    header = json.loads(valid[8 : 8 + n])
    header["w"]["data_offsets"] = [0, 10**9]  # points far beyond the end of the file
    lying_offsets = json.dumps(header).encode()
    import io

    zipped = io.BytesIO()
    torch.save({"w": _Marker(marker)}, zipped)
    return {
        "pickle": pickle.dumps({"w": _Marker(marker)}),
        "torch-pickle": zipped.getvalue(),
        "truncated": valid[: len(valid) // 2],
        "lying-length": struct.pack("<Q", 10**12) + valid[8:],
        "lying-offsets": struct.pack("<Q", len(lying_offsets)) + lying_offsets + valid[8 + n :],
        "garbage": bytes(range(256)) * 3,
        "empty": b"",
    }


PAYLOADS = list(_payloads(Path("x")))


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    from spurmem.train import TrainConfig, train

    config = TrainConfig(name="src", epochs=2, **TINY)
    return train(config, run_dir=tmp_path_factory.mktemp("runs") / "src", progress=False).run_dir


@pytest.fixture
def run(source_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(source_run, out)
    return out


def _expect_one_line(capsys, args: list[str], names: Path) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert err.startswith("spurmem: error: ") and "\n" not in err, err
    assert str(names) in err, err
    return err


def _ckpt(run: Path, epoch: int) -> Path:
    return run / "checkpoints" / f"epoch_{epoch:04d}.safetensors"


def _only_resume_state(run: Path) -> Path:
    """Mark the run interrupted after epoch 2 and keep only that epoch's resume state (no fallback)."""
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "status": "running"}))
    for p in (run / "resume").glob("epoch_0001.*"):
        p.unlink()
    return run / "resume" / "epoch_0002.safetensors"


# Each entry point: (the file it reads, given the run; the CLI arguments, given run and out folder).
ENTRY_POINTS = {
    "eval": (lambda run: _ckpt(run, 2), lambda run, out, f: ["eval", str(run), "--epoch", "last", "--splits", "val"]),
    "probe": (lambda run: _ckpt(run, 2), lambda run, out, f: [
        "probe", str(run), "epoch=last", "scorers=[weight-norm]", "k=[1]", "interventions=[zero]", "--no-progress"]),
    "probe-rewind": (lambda run: _ckpt(run, 1), lambda run, out, f: [
        "probe", str(run), "epoch=last", "scorers=[weight-norm]", "k=[1]", "interventions=[rewind]",
        "rewind_epochs=1", "--no-progress"]),
    "memorization-units": (lambda run: _ckpt(run, 2), lambda run, out, f: [
        "memorization", "units", str(run), "--epoch", "last", "--null-draws", "10", "--device", "cpu"]),
    "mitigate": (lambda run: _ckpt(run, 2), lambda run, out, f: [
        "mitigate", str(run), "epochs=1", "--out", str(out), "--no-progress"]),
    "init_from": (lambda run: _ckpt(run, 2), lambda run, out, f: [
        "train", *TINY_OVERRIDES, f"init_from={run}", "init_epoch=last", "--run-dir", str(out), "--no-progress"]),
    "jtt-identification": (lambda run: _ckpt(run, 1), lambda run, out, f: [
        "train", *TINY_OVERRIDES, "algorithm=jtt", f"algorithm_params.identification_run={run}",
        "--run-dir", str(out), "--no-progress"]),
    "weights=": (lambda run: run.parent / "foreign.safetensors", lambda run, out, f: [
        "train", *TINY_OVERRIDES, f"weights={f}", "--run-dir", str(out), "--no-progress"]),
    "weights=.pth": (lambda run: run.parent / "foreign.pth", lambda run, out, f: [
        "train", *TINY_OVERRIDES, f"weights={f}", "--run-dir", str(out), "--no-progress"]),
    "resume": (lambda run: _only_resume_state(run), lambda run, out, f: [
        "train", "--resume", "--run-dir", str(run), "--no-progress"]),
}


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_bad_weight_file_is_one_clear_line_and_runs_no_code(run, tmp_path, capsys, entry, payload):
    marker = tmp_path / "PWNED"
    target_of, args_of = ENTRY_POINTS[entry]
    target = target_of(run)
    target.write_bytes(_payloads(marker)[payload])
    _expect_one_line(capsys, args_of(run, tmp_path / "out", target), target)
    assert not marker.exists(), "unpickling ran code"


def test_valid_file_with_wrong_checksum_is_caught(run, capsys):
    from spurmem.train.checkpoint import save_tensors

    path = _ckpt(run, 2)
    state = {k: v + 1 if v.is_floating_point() else v for k, v in
             __import__("safetensors.torch", fromlist=["load"]).load(path.read_bytes()).items()}
    save_tensors(path, state)  # a well-formed file, but not the one the run wrote
    err = _expect_one_line(capsys, ["eval", str(run), "--epoch", "last", "--splits", "val"], path)
    assert "sha256" in err


def test_checkpoint_sidecars_carry_sha256(source_run):
    import hashlib

    for folder in ("checkpoints", "resume"):
        side = json.loads((source_run / folder / "epoch_0002.json").read_text())
        data = (source_run / folder / "epoch_0002.safetensors").read_bytes()
        assert side["sha256"] == hashlib.sha256(data).hexdigest()


def test_resume_falls_back_to_the_newest_good_epoch(tmp_path, capsys):
    from spurmem.train import TrainConfig, read_info, train

    config = TrainConfig(name="fb", epochs=3, **TINY)
    run = tmp_path / "fb"
    train(config.model_copy(update={"epochs": 3}), run_dir=run, progress=False)
    info = read_info(run)
    info["status"] = "running"  # as if killed after epoch 3's checkpoint
    (run / "run.json").write_text(json.dumps(info))
    bad = run / "resume" / "epoch_0003.safetensors"
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.warns(UserWarning, match=str(bad)):
        result = train(config, run_dir=run, resume=True, progress=False)
    assert result.resumed_from == 2
    assert read_info(run)["status"] == "complete"


def test_cli_warnings_are_one_line_without_python_source(tmp_path, capsys):
    """The resume fallback's warning through the CLI: ``spurmem: warning: ...`` naming the bad file,
    not Python's ``file.py:123: UserWarning`` with a source line."""
    from spurmem.cli import main
    from spurmem.train import TrainConfig, read_info, train

    run = tmp_path / "fbcli"
    train(TrainConfig(name="fbcli", epochs=2, **TINY), run_dir=run, progress=False)
    info = read_info(run)
    info["status"] = "running"
    (run / "run.json").write_text(json.dumps(info))
    bad = run / "resume" / "epoch_0002.safetensors"
    bad.write_bytes(bad.read_bytes()[:100])
    assert main(["train", "--run-dir", str(run), "--resume", "--no-progress"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    warned = [line for line in err if line.startswith("spurmem: warning: resume:")]
    assert len(warned) == 1 and str(bad) in warned[0]
    assert not any("UserWarning" in line or ".py:" in line for line in err)


def test_critical_units_binary_file_is_one_line(run, tmp_path, capsys):
    units = tmp_path / "units.txt"
    units.write_bytes(b"\x80\x81\xff\x00" * 20)
    _expect_one_line(capsys, ["mitigate", str(run), "epochs=1", "target=critical", f"critical_units={units}",
                              "--out", str(tmp_path / "m"), "--no-progress"], units)


def test_rewind_source_file_api(tmp_path):
    from spurmem.probes.interventions import load_state_file

    marker = tmp_path / "PWNED"
    for name, data in _payloads(marker).items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(data)
        with pytest.raises(UnreadableFileError, match=str(path)):
            load_state_file(path)
    assert not marker.exists()


@pytest.mark.parametrize("error", [PermissionError, IsADirectoryError])
def test_unexpected_os_errors_on_reading_are_one_line(run, capsys, error, monkeypatch):
    path = _ckpt(run, 2)
    original = Path.read_bytes

    def refuse(self):
        if self == path:
            raise error(13, "refused", str(self))
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    _expect_one_line(capsys, ["eval", str(run), "--epoch", "last", "--splits", "val"], path)


def test_debug_flag_and_env_show_the_traceback(run, capsys, monkeypatch):
    _ckpt(run, 2).write_bytes(b"junk")
    with pytest.raises(UnreadableFileError):
        main(["--debug", "eval", str(run), "--epoch", "last"])
    monkeypatch.setenv("SPURMEM_DEBUG", "1")
    with pytest.raises(UnreadableFileError):
        main(["eval", str(run), "--epoch", "last"])


# Each file of a run folder and the commands that read it.
RUN_FILES = {
    "run.json": ("eval", "runs", "report", "resume"),
    "config.yaml": ("eval", "report", "resume"),
    "metrics.jsonl": ("runs", "report", "resume"),
    "checkpoints/epoch_0002.json": ("eval", "resume"),
    "resume/epoch_0002.json": ("resume",),
    "probes/p/probe.json": ("probe",),
    "probes/p/verdicts.json": ("report",),
    "probes/p/summary.csv": ("report",),
}
DAMAGE = {
    "garbage": lambda p: p.write_bytes(b"\x80\x00\xff" * 50),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: max(1, len(p.read_bytes()) // 2)]),
    "json-list": lambda p: p.write_text("[1, 2]\n"),
}
COMMANDS = {
    "eval": lambda r: ["eval", str(r), "--epoch", "last", "--splits", "val"],
    "probe": lambda r: ["probe", str(r), "name=p", "scorers=[weight-norm]", "k=[1]", "interventions=[zero]",
                        "--no-progress"],
    "report": lambda r: ["report", str(r), "--out", str(r.parent / "report")],
    "runs": lambda r: ["runs", str(r.parent)],
    "resume": lambda r: ["train", "--resume", "--run-dir", str(r), "--no-progress"],
}


@pytest.fixture(scope="module")
def probed_run(source_run):
    assert main(COMMANDS["probe"](source_run)) == 0
    return source_run


@pytest.mark.parametrize("name", list(RUN_FILES))
def test_every_damaged_run_file_is_ok_or_one_line(probed_run, tmp_path, capsys, name):
    """Each file of a run folder, damaged three ways, under the commands that read it: the command
    either works (it does not need the file) or prints one error line; never a traceback."""
    for damage, apply in DAMAGE.items():
        for command in RUN_FILES[name]:
            run = tmp_path / f"{damage}-{command}" / "run"
            shutil.copytree(probed_run, run)
            if command == "resume" and name != "run.json":
                info = json.loads((run / "run.json").read_text())
                (run / "run.json").write_text(json.dumps({**info, "status": "running"}))
            apply(run / name)
            rc = main(COMMANDS[command](run))
            err = capsys.readouterr().err
            assert rc in (0, 2), (damage, command, rc)
            if rc == 2:
                lines = [line for line in err.splitlines() if line.startswith("spurmem: error: ")]
                assert len(lines) == 1 and "Traceback" not in err, (damage, command, err)
