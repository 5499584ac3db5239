"""`spurmem compare` (protocol, resumability, the table) and `spurmem mitigate` config building."""

import json

import numpy as np
import pandas as pd
import pytest

from spurmem.cli import main
from spurmem.config import ConfigError, load_config
from spurmem.train import TrainConfig, read_history, read_info, train
from spurmem.train import hparams as registry
from spurmem.train.compare import CompareConfig, run_compare
from spurmem.train.compare_table import write_comparison
from spurmem.train.mitigate import mitigation_config

SHAPES = dict(n_train=200, n_val=80, n_test=80, size=12, seed=0)


def tiny(tmp_path, **over):
    fields = dict(name="t", out_dir=str(tmp_path / "cmp"), dataset="synthetic-shapes", dataset_params=SHAPES,
                  model_params={"width": 0.25}, algorithms=["erm", "erm-continue", "jtt", "dfr", "neurontune", "spurmem"],
                  seeds=[0, 1], epochs=2, fine_tune_epochs=1, train={"batch_size": 50})
    fields.update(over)
    return CompareConfig(**fields)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    cmp = tiny(tmp_path_factory.mktemp("compare"))
    result = run_compare(cmp, progress=False, log=lambda _: None)
    text, paths = write_comparison(result)
    return cmp, result, text, paths


def test_protocol_is_applied_to_every_run(finished):
    cmp, result, _, _ = finished
    runs = {(r.algorithm, r.seed): r for r in result.runs}
    assert set(runs) == {(a, s) for a in cmp.algorithms for s in (0, 1)}
    for (algorithm, seed), r in runs.items():
        c = r.config
        assert c.seed == seed and c.selection == "val_wga" and c.dataset == "synthetic-shapes"
        if algorithm in ("erm-continue", "spurmem"):
            assert c.epochs == 1 and c.init_from == str(runs[("erm", seed)].run_dir) and c.lr == 2e-4
            assert c.batch_size == 50  # the comparison's `train` overrides the registry's batch 100
        elif algorithm in ("dfr", "neurontune"):
            assert c.epochs == 0 and c.init_from == str(runs[("erm", seed)].run_dir)
        else:
            assert c.epochs == 2 and c.init_from is None
    assert runs[("jtt", 1)].config.algorithm_params["identification_run"] == str(runs[("erm", 1)].run_dir)
    # erm-continue is the framework's control: same start, optimiser and budget, different loss
    a, b = runs[("erm-continue", 0)].config, runs[("spurmem", 0)].config
    same = {k for k in TrainConfig.model_fields if k not in ("name", "algorithm", "algorithm_params")}
    assert {k: getattr(a, k) for k in same} == {k: getattr(b, k) for k in same}


def test_table_matches_the_runs(finished):
    cmp, result, text, paths = finished
    summary = pd.read_csv(paths["csv"])
    per_run = pd.read_csv(paths["per_run"])
    assert len(per_run) == 12
    for algorithm in cmp.algorithms:
        values = []
        for r in result.runs:
            if r.algorithm == algorithm:
                sel = read_info(r.run_dir)["selection"]["epoch"]
                row = next(h for h in read_history(r.run_dir) if h["epoch"] == sel)
                values.append(row["test/worst_group_accuracy"])
        got = summary[(summary.algorithm == algorithm) & (summary.metric == "test/worst_group_accuracy")].iloc[0]
        assert got["mean"] == pytest.approx(np.mean(values)) and got["std"] == pytest.approx(np.std(values, ddof=1))
        assert got["n_seeds"] == 2
    gap = per_run[per_run.algorithm == "erm"].iloc[0]
    r0 = next(r for r in result.runs if r.algorithm == "erm" and r.seed == gap["seed"])
    row = next(h for h in read_history(r0.run_dir) if h["epoch"] == gap["selected_epoch"])
    assert gap["gap_g1"] == pytest.approx(row["train/acc_g1"] - row["test/acc_g1"])
    for phrase in ("selection: val_wga", "seeds: [0, 1]", "2 epochs from scratch", "fine-tune 1 epochs",
                   "adjusted avg", "| spurmem | none | 2 + 1 |", "| dfr | validation | 2 + 0 |", "g1 = square/blue"):
        assert phrase in text
    saved = json.loads(paths["json"].read_text())
    assert saved["selection_rule"] == "val_wga" and len(saved["runs"]) == 12


def test_every_table_says_which_group_labels_and_how_much_compute(finished):
    cmp, result, text, paths = finished
    expected = {"erm": "none", "erm-continue": "none", "jtt": "none", "dfr": "validation", "neurontune": "none",
                "spurmem": "none"}
    per_run = pd.read_csv(paths["per_run"])
    assert dict(zip(per_run.algorithm, per_run.group_labels)) == expected
    assert set(per_run.selection_rule) == {"val_wga"} and set(per_run.selection_group_labels) == {"validation"}
    summary = pd.read_csv(paths["csv"])
    assert dict(zip(summary.algorithm, summary.group_labels)) == expected
    saved = json.loads(paths["json"].read_text())
    assert {a: v["group_labels"] for a, v in saved["algorithms"].items()} == expected
    assert {r["algorithm"]: r["group_labels"] for r in saved["runs"]} == expected
    for r in result.runs:
        assert read_info(r.run_dir)["group_labels"] == expected[r.algorithm]
    # 200 training examples in batches of 50: 4 steps per epoch; ERM 2 epochs, fine-tuning 1, jtt stage 1 = 1
    algorithms = saved["algorithms"]
    assert (algorithms["erm"]["total_epochs"], algorithms["erm"]["total_steps"]) == (2, 8)
    assert (algorithms["erm-continue"]["epochs"], algorithms["erm-continue"]["total_epochs"]) == (1, 3)
    assert algorithms["erm-continue"]["total_steps"] == 12 and algorithms["dfr"]["total_steps"] == 8
    assert (algorithms["jtt"]["epochs"], algorithms["jtt"]["total_epochs"], algorithms["jtt"]["total_steps"]) == (2, 3, 12)
    assert saved["budget"] == "as-configured" and "budget: as-configured: 2 epochs from scratch" in text


def test_rerun_skips_finished_runs(finished):
    cmp, result, _, _ = finished
    stamps = {r.run_dir: (r.run_dir / "run.json").stat().st_mtime_ns for r in result.runs}
    messages = []
    again = run_compare(cmp, progress=False, log=messages.append)
    assert all("skipped" in m for m in messages) and len(messages) == 12
    assert {r.run_dir: (r.run_dir / "run.json").stat().st_mtime_ns for r in again.runs} == stamps


def test_train_split_evaluated_only_at_the_selected_epoch_gives_the_same_gap(finished, tmp_path):
    _, _, _, paths = finished
    cmp = tiny(tmp_path, algorithms=["erm"], seeds=[0], train_eval="selected")
    result = run_compare(cmp, progress=False, log=lambda _: None)
    assert "train/average" not in read_history(result.runs[0].run_dir)[-1]
    _, lean_paths = write_comparison(result)
    lean = pd.read_csv(lean_paths["per_run"]).iloc[0]
    full = pd.read_csv(paths["per_run"]).query("algorithm == 'erm' and seed == 0").iloc[0]
    assert lean["selected_epoch"] == full["selected_epoch"]
    for g in range(4):
        assert lean[f"gap_g{g}"] == pytest.approx(full[f"gap_g{g}"])
    assert (cmp.output / "train_eval").is_dir()


def test_matched_budget_gives_from_scratch_baselines_the_erm_plus_fine_tune_epochs(tmp_path):
    algorithms = ["erm", "erm-continue", "reweight", "groupdro", "jtt", "dfr", "neurontune", "spurmem"]
    plan = run_compare(tiny(tmp_path, algorithms=algorithms, budget="matched", epochs=3, fine_tune_epochs=2),
                       dry_run=True)
    runs = {(r.algorithm, r.seed): r for r in plan.runs}
    bases = {b.seed: b for b in plan.bases}
    assert set(bases) == {0, 1} and all(b.config.epochs == 3 and b.label == "erm (base)" for b in bases.values())
    for (algorithm, seed), r in runs.items():
        expected = {"erm-continue": 2, "spurmem": 2, "dfr": 0, "neurontune": 0}.get(algorithm, 3 + 2)
        assert r.config.epochs == expected, algorithm
        if algorithm in ("erm-continue", "spurmem", "dfr", "neurontune"):
            assert r.config.init_from == str(bases[seed].run_dir)
    assert runs[("jtt", 0)].config.algorithm_params["identification_run"] == str(bases[0].run_dir)
    assert runs[("erm", 0)].run_dir != bases[0].run_dir
    same = run_compare(tiny(tmp_path, algorithms=algorithms, epochs=3, fine_tune_epochs=2), dry_run=True)
    assert same.bases == [] and {r.config.epochs for r in same.runs if r.algorithm in ("reweight", "groupdro")} == {3}
    # trained: every reported row has the same total epochs (ERM 2 + fine-tuning 1 = 3)
    cmp = tiny(tmp_path, out_dir=str(tmp_path / "matched"), algorithms=["erm", "erm-continue", "groupdro"], seeds=[0],
               epochs=2, fine_tune_epochs=1, budget="matched")
    text, paths = write_comparison(run_compare(cmp, progress=False, log=lambda _: None))
    saved = json.loads(paths["json"].read_text())
    assert {a: v["total_epochs"] for a, v in saved["algorithms"].items()} == {"erm": 3, "erm-continue": 3, "groupdro": 3}
    assert saved["budget"] == "matched" and "budget: matched: 3 epochs from scratch" in text
    assert "| groupdro | training | 3 |" in text and "| erm-continue | none | 2 + 1 |" in text


def test_changed_settings_get_new_run_dirs(tmp_path):
    a = run_compare(tiny(tmp_path), dry_run=True)
    b = run_compare(tiny(tmp_path, hparams={"erm": {"lr": 0.01}}), dry_run=True)
    dirs_a = {(r.algorithm, r.seed): r.run_dir for r in a.runs}
    dirs_b = {(r.algorithm, r.seed): r.run_dir for r in b.runs}
    assert all(dirs_a[k] != dirs_b[k] for k in dirs_a)  # everything built on ERM changes with it


def test_variants_are_rows_of_their_own(tmp_path):
    cmp = tiny(tmp_path, algorithms=["erm", "spurmem", "spurmem-logits"],
               variants={"spurmem-logits": {"algorithm": "spurmem", "lr": 1e-3, "params": {"contrast_on": "logits"}}})
    runs = {(r.algorithm, r.seed): r for r in run_compare(cmp, dry_run=True).runs}
    plain, variant = runs[("spurmem", 0)], runs[("spurmem-logits", 0)]
    assert variant.config.algorithm == "spurmem" and variant.config.algorithm_params == {"contrast_on": "logits"}
    assert variant.config.lr == 1e-3 and plain.config.lr == 2e-4 and plain.config.algorithm_params == {}
    assert variant.config.init_from == str(runs[("erm", 0)].run_dir) and variant.config.epochs == 1
    assert variant.run_dir.name.startswith("spurmem-logits-") and variant.run_dir != plain.run_dir
    with pytest.raises(ConfigError, match="variants.x.algorithm"):
        load_config(CompareConfig, None, ["algorithms=[erm,x]", "variants.x.algorithm=nope"])


def test_compare_cli_dry_run_lists_every_run(tmp_path, capsys):
    out = str(tmp_path / "cli")
    assert main(["compare", "--dry-run", f"out_dir={out}", "dataset=synthetic-shapes", "seeds=[0,1]",
                 "algorithms=[erm,spurmem,dfr]", "epochs=3", "fine_tune_epochs=2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 6 and all(" new " in line for line in lines)
    assert [line.split()[0] for line in lines[:3]] == ["erm", "spurmem", "dfr"]
    assert "epochs   2" in lines[1] and "epochs   0" in lines[2]
    assert main(["compare", "--dry-run", "algoritms=[erm]"]) == 2  # the typo is reported, not ignored
    assert "did you mean 'algorithms'" in capsys.readouterr().err


def test_protocol_errors(tmp_path):
    with pytest.raises(ConfigError, match="groupdro"):
        run_compare(tiny(tmp_path, algorithms=["erm", "groupdro"], group_labels=False), dry_run=True)
    assert tiny(tmp_path, algorithms=["erm"], group_labels=False).selection_rule == "val_worst_class"
    with pytest.raises(ConfigError, match="epochs"):
        run_compare(tiny(tmp_path, hparams={"erm": {"epochs": 5}}), dry_run=True)
    with pytest.raises(ConfigError, match="did you mean 'spurmem'"):
        load_config(CompareConfig, None, ["algorithms=[erm,spurmen]"])
    with pytest.raises(ConfigError, match="identification_epoch"):
        run_compare(tiny(tmp_path, hparams={"jtt": {"params": {"identification_epoch": 9}}}), dry_run=True)


def test_random_search_is_seeded_and_keeps_the_best(tmp_path):
    assert [h.to_dict() for h in registry.search_draws("spurmem", 3, 7)] == \
        [h.to_dict() for h in registry.search_draws("spurmem", 3, 7)]
    assert registry.search_draws("spurmem", 3, 7)[0].to_dict() != registry.search_draws("spurmem", 3, 8)[0].to_dict()
    cmp = tiny(tmp_path, algorithms=["erm"], seeds=[0], epochs=1, search={"trials": 2, "seed": 0})
    result = run_compare(cmp, progress=False, log=lambda _: None)
    assert len(result.search_log) == 3
    best = max(result.search_log, key=lambda e: (e["selection_value"], -e["trial"]))
    assert result.chosen["erm"].to_dict() == best["hparams"]


def test_mitigation_config_inherits_and_routes_overrides(tmp_path):
    source = tmp_path / "erm"
    train(TrainConfig(name="erm", dataset="synthetic-shapes", dataset_params=SHAPES, model_params={"width": 0.25},
                      epochs=1, seed=3), run_dir=source, progress=False)
    c = mitigation_config(source, ["fraction=0.05", "lambda=0.5", "epochs=4", "lr=1e-4"])
    assert (c.algorithm, c.seed, c.dataset_params, c.model_params) == ("spurmem", 3, SHAPES, {"width": 0.25})
    assert c.algorithm_params == {"fraction": 0.05, "lambda": 0.5}
    assert (c.epochs, c.lr, c.schedule, c.batch_size, c.init_from) == (4, 1e-4, "plateau", 100, str(source))
    control = mitigation_config(source, ["algorithm=erm-continue"])
    assert control.algorithm == "erm-continue" and control.epochs == 21 and control.algorithm_params == {}
    with pytest.raises(ConfigError, match="did you mean 'fraction'"):
        mitigation_config(source, ["fracton=0.1"])
    with pytest.raises(ConfigError, match="mitigate runs one of"):
        mitigation_config(source, ["algorithm=groupdro"])
    assert main(["mitigate", str(source), "epochs=1", "fraction=0.05", "--out", str(tmp_path / "mit"),
                 "--no-progress"]) == 0
    history = read_history(tmp_path / "mit")
    assert history[0]["test/average"] == pytest.approx(read_history(source)[-1]["test/average"])
    assert set(history[-1]["terms"]) == {"ntxent", "ce", "masked_ce", "disagreement"}
