"""Every registered algorithm runs a short colored-digits job through the shared training loop."""

import pytest
import torch
from safetensors.torch import load_file

from spurmem.config import ConfigError
from spurmem.data import load_dataset
from spurmem.train import ALGORITHMS, TrainConfig, read_history, read_info, train
from spurmem.train.algorithms.framework import SpurMemFramework
from spurmem.train.algorithms.groupdro import GroupDRO
from spurmem.train.checkpoint import list_epochs, load_epoch_weights




@pytest.fixture(scope="module")
def digits():
    return load_dataset("colored-digits")


@pytest.fixture(scope="module")
def erm_run(digits, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "erm"
    train(TrainConfig(name="erm", dataset="colored-digits", batch_size=64, epochs=3, keep_epochs=[1]), run_dir=run_dir,
          dataset=digits, progress=False)
    return run_dir


def run(algorithm, digits, tmp_path, **fields):
    config = TrainConfig(name=algorithm, algorithm=algorithm, dataset="colored-digits", batch_size=64, **fields)
    result = train(config, run_dir=tmp_path / algorithm, dataset=digits, progress=False)
    assert read_info(result.run_dir)["status"] == "complete"
    return result


def test_every_algorithm_is_registered():
    assert set(ALGORITHMS) == {"erm", "erm-continue", "reweight", "groupdro", "jtt", "dfr", "neurontune", "spurmem"}
    labels = {name: cls.group_labels for name, cls in ALGORITHMS.items()}
    assert labels == {"erm": "none", "erm-continue": "none", "reweight": "training", "groupdro": "training",
                      "jtt": "none", "dfr": "validation", "neurontune": "none", "spurmem": "none"}


def test_erm_continue_starts_from_the_erm_checkpoint(digits, erm_run, tmp_path):
    result = run("erm-continue", digits, tmp_path, init_from=str(erm_run), init_epoch="last", epochs=1, lr=2e-4)
    erm_last = read_history(erm_run)[-1]
    start = result.history[0]
    assert start["epoch"] == 0 and start["test/average"] == pytest.approx(erm_last["test/average"])
    assert set(result.history[-1]["terms"]) == {"ce"}


def test_framework_logs_each_term_and_the_disagreement(digits, erm_run, tmp_path):
    result = run("spurmem", digits, tmp_path, init_from=str(erm_run), init_epoch="last", epochs=2, lr=2e-4,
                 schedule="plateau", algorithm_params={"fraction": 0.05, "contrast_on": "logits"})
    for row in result.history[1:]:
        terms = row["terms"]
        assert set(terms) == {"ntxent", "ce", "masked_ce", "disagreement"}
        assert 0.0 <= terms["disagreement"] <= 1.0 and terms["ntxent"] > 0
        # the summed loss is the two NT-Xent terms plus 0.2 CE
        assert row["train_loss"] == pytest.approx(2 * terms["ntxent"] + 0.2 * terms["ce"], rel=1e-4)
    info = read_info(result.run_dir)["algorithm_info"]
    assert info["params"]["fraction"] == 0.05 and info["last_mask"]["masked"] > 0


def test_reweight_and_groupdro_run(digits, tmp_path):
    rw = run("reweight", digits, tmp_path, epochs=1)
    assert rw.history[-1]["terms"]["ce"] > 0
    dro = run("groupdro", digits, tmp_path, epochs=1, algorithm_params={"eta": 0.5})
    q = [dro.history[-1]["terms"][f"q_g{g}"] for g in range(4)]
    assert sum(q) == pytest.approx(1.0, abs=1e-6) and max(q) > 0.26  # moved off uniform


def test_jtt_draws_its_error_set_more_often(digits, erm_run, tmp_path):
    result = run("jtt", digits, tmp_path, epochs=1,
                 algorithm_params={"identification_run": str(erm_run), "identification_epoch": 1, "lambda_up": 10})
    share_in_batches = result.history[-1]["terms"]["error_set_share"]
    stage1 = read_history(erm_run)[1]
    error_rate = 1 - stage1["train/average"]
    assert 0 < error_rate < 0.5
    assert share_in_batches > 2 * error_rate
    info = read_info(result.run_dir)["algorithm_info"]
    assert info["error_set_size"] == round(error_rate * len(digits["train"]))
    assert sum(info["error_set_by_group"]) == info["error_set_size"]


def test_dfr_refits_only_the_head_and_beats_its_erm_start(digits, erm_run, tmp_path):
    result = run("dfr", digits, tmp_path, init_from=str(erm_run), init_epoch="last", epochs=0)
    assert list_epochs(result.run_dir) == [0]
    erm = load_file(erm_run / "checkpoints" / f"epoch_{list_epochs(erm_run)[-1]:04d}.safetensors")
    dfr = load_file(result.run_dir / "checkpoints" / "epoch_0000.safetensors")
    changed = {k for k in erm if not torch.equal(erm[k], dfr[k])}
    assert changed == {"fc.weight", "fc.bias"}  # small-cnn's head; BatchNorm statistics untouched
    erm_wga = read_history(erm_run)[-1]["test/worst_group_accuracy"]
    assert result.row()["test/worst_group_accuracy"] > erm_wga + 0.1
    info = read_info(result.run_dir)["algorithm_info"]
    assert info["c"] in (1.0, 0.7, 0.3, 0.1, 0.07, 0.03, 0.01) and len(info["tuning_worst_group_accuracy"]) == 7


def test_neurontune_suppresses_units_refits_only_the_head_and_records_its_labels(digits, erm_run, tmp_path):
    result = run("neurontune", digits, tmp_path, init_from=str(erm_run), init_epoch="last", epochs=0,
                 algorithm_params={"max_fraction": 0.25, "n_draws": 3})
    erm = load_file(erm_run / "checkpoints" / f"epoch_{list_epochs(erm_run)[-1]:04d}.safetensors")
    tuned = load_file(result.run_dir / "checkpoints" / "epoch_0000.safetensors")
    assert {k for k in erm if not torch.equal(erm[k], tuned[k])} == {"fc.weight", "fc.bias"}
    info = read_info(result.run_dir)
    assert info["group_labels"] == "none" and info["selection_group_labels"] == "validation"
    erm_info = read_info(erm_run)
    assert erm_info["group_labels"] == "none" and info["steps_per_epoch"] == erm_info["steps_per_epoch"] > 0
    suppressed = info["algorithm_info"]["suppressed_units"]
    assert 0 < len(suppressed) <= 0.25 * info["algorithm_info"]["n_units"]
    assert torch.all(tuned["fc.weight"][:, suppressed] == 0)
    assert info["algorithm_info"]["rounds"][0]["errors_by_class"][0] + \
        info["algorithm_info"]["rounds"][0]["errors_by_class"][1] > 0


@pytest.mark.parametrize("name", ["dfr", "neurontune"])
def test_head_refits_refuse_a_training_budget_or_no_start(name, erm_run, tmp_path):
    with pytest.raises(ConfigError, match="epochs=0 and init_from"):
        train(TrainConfig(name=name, algorithm=name, dataset="colored-digits", init_from=str(erm_run), epochs=3),
              run_dir=tmp_path / name, progress=False)
    with pytest.raises(ConfigError, match="epochs=0 and init_from"):
        train(TrainConfig(name=name, algorithm=name, dataset="colored-digits", epochs=0), run_dir=tmp_path / name,
              progress=False)
    assert not (tmp_path / name).exists()


class _Crash(Exception):
    pass


def crashing(cls, at):
    """``cls`` whose loss raises at (epoch, batch) ``at``: a simulated kill mid-epoch."""

    class Crashing(cls):
        def on_epoch_start(self, epoch, model):
            super().on_epoch_start(epoch, model)
            self._at = (epoch, 0)

        def loss(self, model, batch):
            self._at = (self._at[0], self._at[1] + 1)
            if self._at == at:
                raise _Crash()
            return super().loss(model, batch)

    return Crashing


@pytest.mark.parametrize("name,cls,params", [("groupdro", GroupDRO, {"eta": 0.3}),
                                             ("spurmem", SpurMemFramework, {"fraction": 0.05})])
def test_killed_run_resumes_to_identical_weights_and_state(shapes, tmp_path, monkeypatch, name, cls, params):
    config = TrainConfig(name=name, algorithm=name, dataset="synthetic-shapes", dataset_params=shapes.params,
                         model_params={"width": 0.25}, batch_size=50, epochs=3, algorithm_params=params)
    reference = train(config, run_dir=tmp_path / "ref", dataset=shapes, progress=False)
    monkeypatch.setitem(ALGORITHMS, name, crashing(cls, at=(2, 2)))
    with pytest.raises(_Crash):
        train(config, run_dir=tmp_path / "b", dataset=shapes, progress=False)
    monkeypatch.setitem(ALGORITHMS, name, cls)
    resumed = train(config, run_dir=tmp_path / "b", dataset=shapes, progress=False, resume=True)
    assert resumed.resumed_from == 1
    for key, value in load_epoch_weights(tmp_path / "ref", 3).items():
        assert torch.equal(value, load_epoch_weights(tmp_path / "b", 3)[key]), key
    assert read_info(tmp_path / "b")["algorithm_info"] == read_info(tmp_path / "ref")["algorithm_info"]
    assert [r["terms"] for r in resumed.history] == [r["terms"] for r in reference.history]
