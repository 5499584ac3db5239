"""The shared training loop: learning the shortcut, the run directory, checkpoints, resume, load_run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from spurmem.config import ConfigError
from spurmem.train import TrainConfig, list_epochs, load_epoch_weights, load_run, read_history, train
from spurmem.train import checkpoint as ckpt
from spurmem.train.algorithm import Algorithm
from spurmem.train.algorithms import ALGORITHMS

SHAPES = {"n_train": 200, "n_val": 80, "n_test": 80, "size": 12, "seed": 0}


def shapes_config(**kw) -> TrainConfig:
    base = dict(name="t", dataset="synthetic-shapes", dataset_params=SHAPES, epochs=3, batch_size=32,
                model_params={"width": 0.5}, eval_splits=["train", "val"], device="cpu")
    return TrainConfig(**{**base, **kw})


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_colored_digits_erm_learns_the_shortcut_and_memorises_minority(tmp_path):
    config = TrainConfig(name="cd", dataset="colored-digits", dataset_params={"rho": 0.95}, epochs=10,
                         batch_size=64, eval_every=10, eval_init=False, selection="last", device="cpu")
    result = train(config, run_dir=tmp_path / "cd", progress=False)
    last = result.row(10)
    majority, minority = [0, 3], [1, 2]
    test_major = min(last[f"test/acc_g{g}"] for g in majority)
    test_minor = max(last[f"test/acc_g{g}"] for g in minority)
    train_minor = min(last[f"train/acc_g{g}"] for g in minority)
    assert test_major >= 0.95                 # the majority groups are easy
    assert test_minor <= test_major - 0.2     # the shortcut: clearly lower minority test accuracy
    assert train_minor >= 0.95                # yet the minority training examples are fitted (memorised)


def test_run_directory_layout_and_contents(tmp_path, shapes):
    run = tmp_path / "run"
    result = train(shapes_config(), run_dir=run, progress=False, dataset=shapes)
    assert {p.name for p in run.iterdir()} >= {"config.yaml", "run.json", "metrics.jsonl", "checkpoints",
                                               "predictions", "records", "resume"}
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "complete" and info["selection"]["rule"] == "val_wga"
    assert info["selection"]["epoch"] == result.selection.epoch
    for key in ("git_commit", "host", "torch_version", "device", "spurmem_version", "started", "finished", "seconds"):
        assert key in info
    history = read_history(run)
    assert [r["epoch"] for r in history] == [0, 1, 2, 3]
    row = history[2]
    assert row["terms"]["ce"] > 0 and row["train_loss"] == pytest.approx(row["terms"]["ce"])
    assert len(row["groups"]["val"]) == 4 and row["groups"]["val"][1]["count"] == 20
    assert "train/worst_group_accuracy" in row and "test/average" not in row  # only eval_splits
    best = max(r["val/worst_group_accuracy"] for r in history if r["epoch"] > 0)
    assert result.selection.value == best
    assert list_epochs(run) == sorted({0, result.selection.epoch, 2, 3})  # retained: 2 is the resume fallback
    ckpt_info = ckpt.read_checkpoint_info(run, 2)
    assert ckpt_info["epoch"] == 2 and ckpt_info["seed"] == 0 and ckpt_info["config_hash"] == info["config_hash"]
    assert ckpt_info["metrics"]["val/worst_group_accuracy"] == row["val/worst_group_accuracy"]
    assert sorted(p.name for p in (run / "resume").iterdir()) == [  # the latest and one fallback
        "epoch_0002.json", "epoch_0002.safetensors", "epoch_0003.json", "epoch_0003.safetensors"]
    preds = pd.read_csv(run / "predictions" / "val.csv")
    assert len(preds) == 80 and set(preds["epoch"]) == {result.selection.epoch}
    assert {"id", "y", "a", "group", "pred", "p_true", "loss", "margin"} <= set(preds.columns)
    # the selected checkpoint's predictions agree with the metrics recorded for that epoch
    sel_row = result.row()
    assert (preds["pred"] == preds["y"]).mean() == pytest.approx(sel_row["val/average"])


def test_load_run_epochs_and_rewind_to_init(tmp_path, shapes):
    run = tmp_path / "run"
    result = train(shapes_config(), run_dir=run, progress=False, dataset=shapes)
    loaded = load_run(run, dataset=shapes)
    assert loaded.epoch == result.selection.epoch and not loaded.model.training
    from spurmem.metrics import evaluate

    val = evaluate(loaded.model, shapes, ["val"], device="cpu")["val"]
    assert val.worst_group_accuracy == result.row()["val/worst_group_accuracy"]
    assert load_run(run, "last", dataset=shapes).epoch == 3
    # epoch 0 is the initialisation: the same seed rebuilds the same weights
    torch.manual_seed(0)
    from spurmem.models import build_model

    fresh = build_model("small-cnn", 2, width=0.5)
    assert same_weights(load_epoch_weights(run, 0), fresh.state_dict())
    with pytest.raises(FileNotFoundError, match="available"):
        load_run(run, 7, dataset=shapes)


class _Crash(Exception):
    pass


class CrashingERM(Algorithm):
    """ERM that raises in the middle of a chosen epoch (a simulated kill)."""

    crash_at: tuple[int, int] | None = None

    def on_epoch_start(self, epoch, model):
        self._epoch, self._batch = epoch, 0

    def loss(self, model, batch):
        self._batch += 1
        if CrashingERM.crash_at == (self._epoch, self._batch):
            raise _Crash()
        return super().loss(model, batch)


@pytest.mark.parametrize("recipe", [dict(optimizer="adam", schedule="cosine"),
                                    dict(optimizer="sgd", lr=0.05, schedule="plateau", weight_decay=1e-4)])
def test_resume_after_crash_gives_identical_weights(tmp_path, shapes, monkeypatch, recipe):
    monkeypatch.setitem(ALGORITHMS, "crashing-erm", CrashingERM)
    config = shapes_config(algorithm="crashing-erm", epochs=4, **recipe)
    CrashingERM.crash_at = None
    reference = train(config, run_dir=tmp_path / "ref", progress=False, dataset=shapes)

    CrashingERM.crash_at = (3, 4)  # mid-epoch 3, after optimiser steps that must not leak into the resume
    with pytest.raises(_Crash):
        train(config, run_dir=tmp_path / "b", progress=False, dataset=shapes)
    assert json.loads((tmp_path / "b" / "run.json").read_text())["status"] == "failed"
    assert list_epochs(tmp_path / "b") == [0, 1, 2]
    with pytest.raises(FileExistsError, match="--resume"):
        train(config, run_dir=tmp_path / "b", progress=False, dataset=shapes)
    CrashingERM.crash_at = None
    resumed = train(config, run_dir=tmp_path / "b", resume=True, progress=False, dataset=shapes)
    assert resumed.resumed_from == 2
    for epoch in (3, 4):
        assert same_weights(load_epoch_weights(tmp_path / "ref", epoch), load_epoch_weights(tmp_path / "b", epoch))
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in reference.history]
    assert resumed.selection == reference.selection


def test_kill_between_checkpoint_writes_resumes_from_previous_epoch(tmp_path, shapes, monkeypatch):
    config = shapes_config(epochs=3)
    train(config, run_dir=tmp_path / "ref", progress=False, dataset=shapes)
    real_mark = ckpt.mark_epoch_complete

    def killed_before_marker(run_dir, epoch, info):
        if epoch == 2:
            raise _Crash()  # weights and resume state of epoch 2 are on disk, its marker is not
        real_mark(run_dir, epoch, info)

    monkeypatch.setattr(ckpt, "mark_epoch_complete", killed_before_marker)
    with pytest.raises(_Crash):
        train(config, run_dir=tmp_path / "b", progress=False, dataset=shapes)
    monkeypatch.setattr(ckpt, "mark_epoch_complete", real_mark)
    assert list_epochs(tmp_path / "b") == [0, 1]
    resumed = train(config, run_dir=tmp_path / "b", resume=True, progress=False, dataset=shapes)
    assert resumed.resumed_from == 1
    assert same_weights(load_epoch_weights(tmp_path / "ref", 3), load_epoch_weights(tmp_path / "b", 3))
    assert [r["epoch"] for r in read_history(tmp_path / "b")] == [0, 1, 2, 3]


KILL_SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from spurmem.train import TrainConfig, train
config = TrainConfig.model_validate_json(sys.argv[1])
train(config, run_dir=sys.argv[2], progress=False)
"""


def test_resume_after_kill_9_subprocess(tmp_path, shapes):
    config = shapes_config(epochs=6, eval_splits=["val"])
    run = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, config.model_dump_json(), str(run)], env=env)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and 2 not in list_epochs(run):
        time.sleep(0.02)
    if proc.poll() is not None:
        pytest.skip("the training subprocess ended before it could be killed")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = list_epochs(run)
    assert 2 in done and done[-1] < 6
    resumed = train(config, run_dir=run, resume=True, progress=False, dataset=shapes)
    assert resumed.resumed_from is not None and resumed.resumed_from >= 2
    reference = train(config, run_dir=tmp_path / "ref", progress=False, dataset=shapes)
    assert same_weights(load_epoch_weights(tmp_path / "ref", 6), load_epoch_weights(run, 6))
    assert resumed.selection == reference.selection


def test_overwrite_resume_complete_and_config_mismatch(tmp_path, shapes):
    config = shapes_config(epochs=1)
    run = tmp_path / "r"
    first = train(config, run_dir=run, progress=False, dataset=shapes)
    again = train(config, run_dir=run, resume=True, progress=False, dataset=shapes)  # complete: nothing to do
    assert again.selection == first.selection and len(again.history) == len(first.history)
    with pytest.raises(ConfigError, match="lr: run has 0.001, given 0.01"):
        train(config.model_copy(update={"lr": 0.01}), run_dir=run, resume=True, progress=False, dataset=shapes)
    (run / "marker.txt").write_text("stale")
    train(config, run_dir=run, overwrite=True, progress=False, dataset=shapes)
    assert not (run / "marker.txt").exists()
    foreign = tmp_path / "not-a-run"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a run directory"):
        train(config, run_dir=foreign, overwrite=True, progress=False, dataset=shapes)
    assert (foreign / "precious.txt").exists()


def test_no_checkpoints_keeps_init_selected_and_last(tmp_path, shapes):
    result = train(shapes_config(epochs=4, save_checkpoints=False, eval_every=2), run_dir=tmp_path / "r",
                   progress=False, dataset=shapes)
    assert [r["epoch"] for r in result.history] == [0, 2, 4]
    assert result.selection.epoch in (2, 4)
    assert list_epochs(tmp_path / "r") == sorted({0, result.selection.epoch, 3, 4})  # 3: the resume fallback


def test_init_from_fine_tunes_from_a_run_and_workers_do_not_change_results(tmp_path, shapes):
    source = train(shapes_config(epochs=2), run_dir=tmp_path / "src", progress=False, dataset=shapes)
    tuned = shapes_config(epochs=1, init_from=str(tmp_path / "src"), init_epoch="last", name="ft")
    train(tuned, run_dir=tmp_path / "ft", progress=False, dataset=shapes)
    assert same_weights(load_epoch_weights(tmp_path / "ft", 0), load_epoch_weights(source.run_dir, 2))
    info = json.loads((tmp_path / "ft" / "run.json").read_text())
    assert info["init_from"] == {"run": str(tmp_path / "src"), "epoch": 2}
    train(tuned.model_copy(update={"workers": 2}), run_dir=tmp_path / "ft2", progress=False, dataset=shapes)
    assert same_weights(load_epoch_weights(tmp_path / "ft", 1), load_epoch_weights(tmp_path / "ft2", 1))


def test_config_errors_caught_before_training(tmp_path, shapes):
    with pytest.raises(ConfigError, match="did you mean 'erm'"):
        train(shapes_config(algorithm="ermm"), run_dir=tmp_path / "a", progress=False, dataset=shapes)
    with pytest.raises(ConfigError, match="needs 'val' in eval_splits"):
        train(shapes_config(eval_splits=["train"]), run_dir=tmp_path / "b", progress=False, dataset=shapes)
    with pytest.raises(ConfigError, match="unknown augmentation"):
        train(shapes_config(augment="no-such-augmentation"), run_dir=tmp_path / "c", progress=False, dataset=shapes)
    assert not any((tmp_path / d).exists() for d in "abc")  # rejected before the run directory is made
    train(shapes_config(epochs=1), run_dir=tmp_path / "kept", progress=False, dataset=shapes)
    with pytest.raises(ConfigError, match="did you mean 'erm'"):
        train(shapes_config(epochs=1, algorithm="ermm"), run_dir=tmp_path / "kept", overwrite=True, progress=False,
              dataset=shapes)
    assert list_epochs(tmp_path / "kept") == [0, 1]  # --overwrite with a bad config deletes nothing


def test_augmentation_is_used_and_reproducible(tmp_path, shapes):
    plain = train(shapes_config(epochs=1, eval_splits=["val"]), run_dir=tmp_path / "plain", progress=False,
                  dataset=shapes)
    config = shapes_config(epochs=1, eval_splits=["val"], augment="flip-crop", augment_params={"padding": 2})
    a = train(config, run_dir=tmp_path / "a", progress=False, dataset=shapes)
    b = train(config, run_dir=tmp_path / "b", progress=False, dataset=shapes)
    assert same_weights(load_epoch_weights(a.run_dir, 1), load_epoch_weights(b.run_dir, 1))
    assert not same_weights(load_epoch_weights(a.run_dir, 1), load_epoch_weights(plain.run_dir, 1))


def test_channels_last_matches_the_default_layout(tmp_path, shapes):
    base = shapes_config(epochs=1, eval_splits=["val"])
    a = train(base, run_dir=tmp_path / "a", progress=False, dataset=shapes)
    b = train(base.model_copy(update={"channels_last": True}), run_dir=tmp_path / "b", progress=False, dataset=shapes)
    w0, wa, wb = (load_epoch_weights(r, e) for r, e in ((a.run_dir, 0), (a.run_dir, 1), (b.run_dir, 1)))
    params = [k for k in wa if wa[k].is_floating_point()]
    moved = torch.cat([(wa[k] - w0[k]).flatten() for k in params]).norm()
    differ = torch.cat([(wa[k] - wb[k]).flatten() for k in params]).norm()
    assert differ < 0.02 * moved  # the same training up to float rounding (amplified a little by Adam)
    assert a.row(1)["val/average"] == pytest.approx(b.row(1)["val/average"], abs=0.02)


def test_prefetch_keeps_order_and_reraises():
    from spurmem.train.prefetch import prefetch

    assert list(prefetch(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield 1
        raise ValueError("bad batch")

    got = []
    with pytest.raises(ValueError, match="bad batch"):
        for item in prefetch(failing(), depth=2):
            got.append(item)
    assert got == [1]
