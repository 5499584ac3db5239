"""Checkpoint retention: which epochs a run keeps, and that selection, loading and resume still work."""

import json

import pytest
import torch

from spurmem.cli import main
from spurmem.config import ConfigError, load_config, validate_config
from spurmem.errors import MissingCheckpointError
from spurmem.train import TrainConfig, list_epochs, load_epoch_weights, load_run, read_history, train
from spurmem.train import checkpoint as ckpt
from spurmem.train.retention import Retention
from spurmem.train.selection import select_epoch

SHAPES = {"n_train": 200, "n_val": 80, "n_test": 80, "size": 12, "seed": 0}


def config(**kw) -> TrainConfig:
    base = dict(name="ret", dataset="synthetic-shapes", dataset_params=SHAPES, epochs=7, batch_size=40,
                model_params={"width": 0.5}, eval_splits=["val"], device="cpu", keep_every=3)
    return TrainConfig(**{**base, **kw})


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def retained(shapes, tmp_path_factory):
    return train(config(), run_dir=tmp_path_factory.mktemp("ret") / "run", progress=False, dataset=shapes)


def test_keep_every_3_keeps_exactly_the_promised_epochs(retained):
    run, selected = retained.run_dir, retained.selection.epoch
    # 0, 3, 6: every 3rd; 7: the last; 6 is also the resume fallback; the selected one
    assert list_epochs(run) == sorted({0, 3, 6, 7, selected})
    assert sorted(p.name for p in (run / "resume").iterdir()) == [
        "epoch_0006.json", "epoch_0006.safetensors", "epoch_0007.json", "epoch_0007.safetensors"]
    assert [r["epoch"] for r in read_history(run)] == list(range(8))  # metrics of every epoch stay
    info = json.loads((run / "run.json").read_text())
    assert info["retention"] == {"checkpoints": "retain", "keep_every": 3, "keep_epochs": [], "keep_rewind": 0}


def test_the_selected_epoch_is_loadable_and_a_pruned_one_is_a_clear_error(retained, shapes, capsys):
    run = retained.run_dir
    loaded = load_run(run, dataset=shapes)
    assert loaded.epoch == retained.selection.epoch
    assert select_epoch(read_history(run), "val_wga").epoch == loaded.epoch
    pruned = min(set(range(1, 8)) - set(list_epochs(run)))
    kept = list_epochs(run)
    with pytest.raises(MissingCheckpointError, match=rf"epoch {pruned} \(pruned: .*keep_every=3.*kept epochs available: "
                                                     + repr(kept).replace("[", r"\[").replace("]", r"\]")):
        load_run(run, pruned, dataset=shapes)
    with pytest.raises(FileNotFoundError, match="completed 7 epochs"):  # still a FileNotFoundError for old callers
        load_epoch_weights(run, 9)
    assert main(["eval", str(run), "--epoch", str(pruned), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("spurmem: error: ") and "\n" not in err and str(kept) in err and "pruned" in err


def test_keep_all_mode_and_the_old_save_checkpoints_key(shapes, tmp_path):
    result = train(config(epochs=4, checkpoints="all"), run_dir=tmp_path / "all", progress=False, dataset=shapes)
    assert list_epochs(result.run_dir) == [0, 1, 2, 3, 4]
    assert TrainConfig(save_checkpoints=True).checkpoints == "all"
    old_false = TrainConfig(save_checkpoints=False)
    assert (old_false.checkpoints, old_false.keep_every) == ("retain", 0)
    # merged over a dumped config (memorization examples' overrides): the old key sets the new ones
    merged = validate_config(TrainConfig, {**TrainConfig().model_dump(), "save_checkpoints": False})
    assert (merged.checkpoints, merged.keep_every) == ("retain", 0)
    with pytest.raises(ConfigError, match="save_checkpoints .*must be true or false"):
        load_config(TrainConfig, None, ["save_checkpoints=sometimes"])
    # a run folder written before retention (its config.yaml has save_checkpoints) still reads
    old = tmp_path / "old.yaml"
    old.write_text("epochs: 2\nsave_checkpoints: true\n")
    assert load_config(TrainConfig, old).checkpoints == "all"
    assert "save_checkpoints" not in TrainConfig().model_dump()


def test_keep_rewind_and_keep_epochs(shapes, tmp_path):
    cfg = config(selection="last", keep_every=0, keep_rewind=3, keep_epochs=[2])
    result = train(cfg, run_dir=tmp_path / "rw", progress=False, dataset=shapes)
    assert list_epochs(result.run_dir) == [0, 2, 4, 6, 7]  # init, keep_epochs, selected-3, fallback, last
    assert main(["probe", str(result.run_dir), "scorers=[weight-norm]", "k=[1]", "interventions=[rewind]",
                 "rewind_epochs=3", "repeats=1", "random_control=false", "eval_splits=[train,test]", "--no-progress"]) == 0


def test_selection_moving_later_deletes_the_superseded_epoch_only():
    """Simulate the trainer's pruning over a history whose selection moves: 2 -> 5 -> (stays 5)."""
    policy = Retention("retain", keep_every=4)
    wga = {1: 0.1, 2: 0.5, 3: 0.4, 4: 0.3, 5: 0.7, 6: 0.6, 7: 0.2, 8: 0.7, 9: 0.1}
    present, history = [0], [{"epoch": 0, "train_loss": None, "val/worst_group_accuracy": 0.0}]
    for epoch in range(1, 10):
        history.append({"epoch": epoch, "train_loss": 1.0, "val/worst_group_accuracy": wga[epoch]})
        present.append(epoch)
        resumable = present[-2:]
        selected = [select_epoch(history).epoch, select_epoch([r for r in history if r["epoch"] <= resumable[0]]).epoch]
        present = sorted(policy.kept(present, epoch, resumable, selected, finished=epoch == 9))
        assert selected[0] in present and selected[1] in present
        if epoch == 4:
            assert 2 in present  # selected so far
        if epoch == 6:
            assert 2 not in present and 5 in present  # superseded by 5 (strictly better), deleted
    assert present == [0, 4, 5, 8, 9]  # 8 ties 5 and ties go to the earliest: 5 stays selected


def test_resume_after_a_kill_and_a_corrupt_newest_epoch(shapes, tmp_path, monkeypatch):
    cfg = config()
    reference = train(cfg, run_dir=tmp_path / "ref", progress=False, dataset=shapes)
    real_mark = ckpt.mark_epoch_complete

    class Killed(Exception):
        pass

    def killed_at_6(run_dir, epoch, info):
        if epoch == 6:
            raise Killed()  # epoch 6's weights and resume state are written, its marker is not
        real_mark(run_dir, epoch, info)

    monkeypatch.setattr(ckpt, "mark_epoch_complete", killed_at_6)
    run = tmp_path / "b"
    with pytest.raises(Killed):
        train(cfg, run_dir=run, progress=False, dataset=shapes)
    monkeypatch.setattr(ckpt, "mark_epoch_complete", real_mark)
    rows = read_history(run)
    before_fallback = select_epoch([r for r in rows if r["epoch"] <= 4]).epoch
    assert {0, 3, 4, 5, before_fallback} <= set(list_epochs(run))  # 4: fallback, and its selection, are kept
    (run / "resume" / "epoch_0005.safetensors").write_bytes(b"corrupt")
    with pytest.warns(UserWarning, match="resuming from epoch 4"):
        resumed = train(cfg, run_dir=run, resume=True, progress=False, dataset=shapes)
    assert resumed.resumed_from == 4
    assert resumed.selection == reference.selection
    assert list_epochs(run) == list_epochs(reference.run_dir)
    assert same_weights(load_epoch_weights(run, 7), load_epoch_weights(reference.run_dir, 7))
    assert load_run(run, dataset=shapes).epoch == reference.selection.epoch


def test_compare_keeps_the_epochs_jtt_and_fine_tuning_load():
    from spurmem.train.compare import CompareConfig, hparams_for, plan_run, stage1_epochs

    cmp = CompareConfig(name="c", dataset="synthetic-shapes", algorithms=["erm", "jtt"], epochs=6, init_epoch=4,
                        hparams={"jtt": {"params": {"identification_epoch": 2}}})
    assert stage1_epochs(cmp) == {2, 4}
    base = plan_run(cmp, "erm", 0, hparams_for(cmp, "erm"), None, base=True)
    assert base.config.keep_epochs == [2, 4]
    searched = cmp.model_copy(update={"search": cmp.search.model_copy(update={"trials": 2})})
    assert stage1_epochs(searched) == {1, 2, 3, 4, 5}
    # keep_epochs is not part of the run's hash: the base run's folder name does not change
    plain = plan_run(cmp.model_copy(update={"algorithms": ["erm"], "init_epoch": "last", "hparams": {}}),
                     "erm", 0, hparams_for(cmp, "erm"), None, base=True)
    assert plain.config.keep_epochs == [] and plain.run_dir.name == base.run_dir.name
