import json

import pandas as pd
import pytest

from spurmem.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from spurmem.train import TrainConfig, train

    config = TrainConfig(name="tiny", dataset="synthetic-shapes",
                         dataset_params={"n_train": 200, "n_val": 80, "n_test": 80, "size": 12},
                         model="small-cnn", model_params={"widths": [4, 8]}, epochs=4, batch_size=64,
                         lr=0.01, selection="last", device="cpu", keep_rewind=3)  # rewind_epochs=3 below
    return train(config, run_dir=tmp_path_factory.mktemp("runs") / "tiny", progress=False).run_dir


def test_cli_probe_writes_outputs_and_rewinds_the_right_epoch(run_dir, capsys):
    args = ["probe", str(run_dir), "name=cli", "scorers=[weight-norm]", "k=[1,2]", "interventions=[zero,rewind]",
            "rewind_epochs=3", "repeats=2", "epoch=last", "--no-progress"]
    assert main(args) == 0
    out = run_dir / "probes" / "cli"
    for name in ("rows.csv", "summary.csv", "control.csv", "verdicts.csv", "verdicts.json", "summary.md",
                 "config.yaml", "probe.json"):
        assert (out / name).exists(), name
    meta = json.loads((out / "probe.json").read_text())
    assert meta["source"]["epoch"] == 4 and meta["source"]["rewind_epoch"] == 1
    assert "5.1 sensitivity" in capsys.readouterr().out
    assert any(r.name.endswith("probe.json") for r in (run_dir / "records").iterdir())

    # the rewind rows equal a manual rewind of the same units to epoch 1
    from spurmem.metrics import evaluate
    from spurmem.probes import Unit, intervene
    from spurmem.train import load_epoch_weights, load_run

    rows = pd.read_csv(out / "rows.csv")
    r = rows[(rows["setting"] == "weight-norm k=2 rewind") & (rows["split"] == "train")]
    units = [Unit.parse(u) for u in r["units"].iloc[0].split(";")]
    run = load_run(run_dir, epoch="last")
    with intervene(run.model, units, "rewind", source=load_epoch_weights(run_dir, 1)) as edited:
        acc = [g.accuracy for g in evaluate(edited, run.dataset, ["train"], device="cpu")["train"].groups]
    assert r.sort_values("group")["acc_after"].tolist() == pytest.approx(acc)

    # a second call resumes everything
    assert main(args) == 0
    assert "0 settings computed" in capsys.readouterr().out


def test_cli_probe_errors(run_dir, capsys):
    assert main(["probe", str(run_dir), "scorer=[weight-norm]"]) == 2
    assert "did you mean 'scorers'" in capsys.readouterr().err
    assert main(["probe", str(run_dir), "interventions=[rewind]", "rewind_epochs=9", "epoch=last"]) == 2
    assert "rewind" in capsys.readouterr().err
    assert main(["probe", str(run_dir / "missing")]) == 2
