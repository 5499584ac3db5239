"""Numerical faults stop a run (failed, last good epoch kept); every JSON file is strict JSON."""

import json
import math

import pytest

from spurmem.cli import main
from spurmem.errors import NumericalFaultError
from spurmem.record import read_records, write_json_atomic
from spurmem.train import TrainConfig, list_epochs, read_history, train
from spurmem.train.run import write_history
from spurmem.train.selection import select_epoch

SHAPES = {"n_train": 48, "n_val": 16, "n_test": 16, "size": 8, "seed": 0}


def strict_load(text: str):
    def refuse(name):
        raise ValueError(f"bare {name} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("value", ["inf", "1e400"])  # nan and negatives were already refused by gt=0
def test_lr_must_be_finite(tmp_path, capsys, value):
    assert main(["train", "--run-dir", str(tmp_path / "r"), f"lr={value}", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "lr" in err and "finite" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("optimizer,lr", [("sgd", 1e6), ("adam", 1e12)])  # Adam's steps are ~lr: 1e6 stays finite here
def test_divergence_stops_the_run_keeps_the_good_epoch_and_marks_it_failed(tmp_path, optimizer, lr):
    config = TrainConfig(name="nan", dataset="synthetic-shapes", dataset_params=SHAPES, model_params={"width": 0.25},
                         batch_size=16, epochs=2, lr=lr, optimizer=optimizer, device="cpu",
                         eval_splits=["train", "val"])
    run = tmp_path / "nan"
    with pytest.raises(NumericalFaultError, match=r"epoch 1, step \d+/3: .*(loss is nan|not finite)"):
        train(config, run_dir=run, progress=False)
    info = strict_load((run / "run.json").read_text())
    assert info["status"] == "failed" and "NumericalFaultError" in info["error"] and info["selection"] is None
    assert [r["status"] for r in read_records(run)] == ["failed"]
    assert list_epochs(run) == [0]  # the initialisation, nothing diverged saved
    for line in (run / "metrics.jsonl").read_text().splitlines():
        strict_load(line)
    strict_load((run / "checkpoints" / "epoch_0000.json").read_text())


def test_json_writers_are_strict_and_write_non_finite_as_null(tmp_path):
    path = write_json_atomic(tmp_path / "a.json", {"nan": float("nan"), "inf": [float("inf"), 1.5]})
    assert strict_load(path.read_text()) == {"nan": None, "inf": [None, 1.5]}
    write_history(tmp_path, [{"epoch": 1, "train_loss": float("nan"), "val/average": float("-inf")}])
    assert read_history(tmp_path) == [{"epoch": 1, "train_loss": None, "val/average": None}]
    strict_load((tmp_path / "metrics.jsonl").read_text())


def test_selection_never_picks_a_diverged_epoch():
    history = [{"epoch": 0, "train_loss": None, "val/worst_group_accuracy": 0.2},
               {"epoch": 1, "train_loss": 0.7, "val/worst_group_accuracy": 0.5},
               {"epoch": 2, "train_loss": math.nan, "val/worst_group_accuracy": 0.9},
               {"epoch": 3, "train_loss": math.inf, "val/worst_group_accuracy": math.nan}]
    assert select_epoch(history, "val_wga").epoch == 1
    assert select_epoch(history, "last").epoch == 1
