"""`spurmem train` and `spurmem eval` end to end (in-process)."""

import json

from spurmem.cli import main

CONFIG = """\
name: cli
dataset: synthetic-shapes
dataset_params: {n_train: 200, n_val: 80, n_test: 80, size: 12}
model: small-cnn
model_params: {width: 0.5}
epochs: 2
batch_size: 32
device: cpu
"""


def test_train_then_eval(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    run = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--run-dir", str(run), "--no-progress", "seed=3"]) == 0
    out = capsys.readouterr().out
    info = json.loads((run / "run.json").read_text())
    assert info["seed"] == 3 and f"selected epoch {info['selection']['epoch']} by val_wga" in out
    assert main(["train", "--config", str(cfg), "--run-dir", str(run), "--no-progress", "seed=3"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--run-dir", str(run), "--resume", "--no-progress"]) == 0  # config from the run
    capsys.readouterr()
    assert main(["eval", str(run), "--epoch", "last", "--csv", str(tmp_path / "groups.csv")]) == 0
    out = capsys.readouterr().out
    for name in ("worst-group accuracy", "average (plain)", "adjusted average (train proportions)",
                 "balanced accuracy (mean over groups)", "worst-class accuracy", "memorisation gap (train minus test"):
        assert name in out
    assert "epoch 2" in out
    rows = (tmp_path / "groups.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 * 4  # header + split x group


def test_config_error_exit_code(tmp_path, capsys):
    assert main(["train", "--run-dir", str(tmp_path / "x"), "epochz=2"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'epochz'" in err and "did you mean 'epochs'" in err


def test_eval_csv_into_a_run_folder_holds_its_lock(tmp_path, capsys):
    """`eval --csv RUN/x.csv` while another process writes RUN fails at once and writes nothing (it used
    to write into the folder unlocked); a CSV outside any run folder needs no lock."""
    from sweep_jobs import lock_held_elsewhere

    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG.replace("epochs: 2", "epochs: 1"))
    run = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--run-dir", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    with lock_held_elsewhere(run) as pid:
        assert main(["eval", str(run), "--csv", str(run / "groups.csv")]) != 0
        err = capsys.readouterr().err.strip()
        assert f"pid {pid}" in err and len(err.splitlines()) == 1
        assert not (run / "groups.csv").exists()
        assert main(["eval", str(run), "--csv", str(tmp_path / "groups.csv")]) == 0
        assert (tmp_path / "groups.csv").is_file()
    assert main(["eval", str(run), "--csv", str(run / "groups.csv")]) == 0
    assert (run / "groups.csv").is_file() and not (run / ".lock").exists()
