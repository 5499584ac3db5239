import json

import numpy as np
import pandas as pd
import pytest
import torch

from probe_models import TinyCNN, memorising_model, planted_dataset, train_briefly
from spurmem.config import ConfigError
from spurmem.probes import ProbeConfig, probe, run_probe
from spurmem.probes import runner as runner_module
from spurmem.probes.grid import expand_grid


@pytest.fixture(scope="module")
def trained(shapes):
    torch.manual_seed(0)
    return train_briefly(TinyCNN(widths=(4, 8)), shapes, epochs=6)


SMALL = dict(scorers=["group-gradient", "weight-norm"], k=[1, 2], interventions=["zero", "reinit"],
             sigmas=[0.5], groups=[1, 2], repeats=3)


@pytest.fixture(scope="module")
def small(trained, shapes):
    return probe(trained, shapes, **SMALL)


def test_rows_cover_every_setting_repeat_split_and_group(small, trained, shapes):
    result = small
    rows = result.rows
    settings, _ = expand_grid(result.config, shapes)
    assert len(rows) == len(settings) * 3 * 4  # splits x groups
    assert rows["setting_id"].nunique() == len(settings)
    # the random control was added, 3 repeats of each random part
    assert set(rows["scorer"]) == {"group-gradient", "weight-norm", "random"}
    assert rows.query("scorer == 'random' and intervention == 'zero'")["repeat"].nunique() == 3
    assert rows.query("scorer == 'weight-norm' and intervention == 'zero'")["repeat"].nunique() == 1
    # before is the same for every setting; drop = before - after; counts match the dataset
    for split in ("train", "val", "test"):
        part = rows[rows["split"] == split]
        assert part.groupby("group")["acc_before"].nunique().max() == 1
        assert (part.groupby("group")["count"].first().to_numpy() == shapes.group_counts(split)).all()
    assert np.allclose(rows["drop"], rows["acc_before"] - rows["acc_after"])
    assert (rows["pred_after_0"] + rows["pred_after_1"] == rows["count"]).all()
    minority = rows[rows["minority"]]
    assert minority["specificity"].notna().all() and rows[~rows["minority"]]["specificity"].isna().all()
    assert trained.stages[0].conv.weight.requires_grad  # caller's model untouched and usable


def test_repeats_are_reproducible_and_recorded(small, trained, shapes):
    a = small.rows
    b = probe(trained, shapes, **SMALL).rows
    pd.testing.assert_frame_equal(a.drop(columns="seconds"), b.drop(columns="seconds"))
    assert (a["seconds"] >= 0).all()
    random_rows = a[a["scorer"] == "random"].drop_duplicates("setting_id")
    assert random_rows["selection_seed"].nunique() == 3  # one fresh draw per repeat
    assert random_rows.groupby("repeat")["units"].nunique().max() <= 2  # k=1 and k=2 draws per repeat
    reinit = a[(a["intervention"] == "reinit") & (a["scorer"] == "weight-norm")]
    assert reinit["intervention_seed"].nunique() == 3
    c = probe(trained, shapes, scorers=["weight-norm"], k=[2], interventions=["zero"], repeats=3, seed=1).rows
    draws = lambda rows: set(rows[rows["scorer"] == "random"]["units"])
    assert draws(c) != draws(a[(a["k"] == 2) & (a["intervention"] == "zero")])


def test_summary_statistics_over_repeats(small):
    result = small
    s = result.summary.summary
    rows = result.rows
    label = "weight-norm k=2 reinit(sigma=0.5)"
    one = s[(s["setting"] == label) & (s["split"] == "train") & (s["group"] == 1)].iloc[0]
    drops = rows[(rows["setting"] == label) & (rows["split"] == "train") & (rows["group"] == 1)]["drop"]
    assert one["n_repeats"] == 3 and one["drop_mean"] == pytest.approx(drops.mean())
    assert one["drop_std"] == pytest.approx(drops.std(ddof=1))
    from scipy import stats
    assert one["drop_ci95"] == pytest.approx(stats.t.ppf(0.975, 2) * drops.std(ddof=1) / np.sqrt(3))
    control = result.summary.control
    assert set(control["group"]) == {1, 2} and (control["control_n"] == 3).all()
    matrix = result.summary.matrix
    assert set(matrix["selected_from"]) == {1, 2} and set(matrix["group"]) == {0, 1, 2, 3}
    assert [c.claim for c in result.summary.claims] == ["5.1 sensitivity", "5.2 group specificity"]


def test_interrupted_grid_resumes_without_recomputing(small, trained, shapes, tmp_path, monkeypatch):
    config = ProbeConfig(**SMALL)
    full = small.rows
    real = runner_module._rows  # called once per finished setting
    calls = {"n": 0, "fail_at": 6}

    class Killed(Exception):
        pass

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == calls["fail_at"]:
            raise Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(runner_module, "_rows", failing)
    with pytest.raises(Killed):
        run_probe(trained, shapes, config, out_dir=tmp_path / "p", progress=False)
    assert len(list((tmp_path / "p" / "settings").glob("*.csv"))) == 5
    monkeypatch.setattr(runner_module, "_rows", real)
    resumed = run_probe(trained, shapes, config, out_dir=tmp_path / "p", progress=False)
    assert resumed.n_resumed == 5 and resumed.n_computed == len(full["setting_id"].unique()) - 5
    pd.testing.assert_frame_equal(resumed.rows.drop(columns="seconds"), full.drop(columns="seconds"))
    for name in ("rows.csv", "summary.csv", "control.csv", "matrix.csv", "verdicts.csv", "summary.md"):
        assert (tmp_path / "p" / name).stat().st_size > 0
    def strict(constant):
        raise AssertionError(f"verdicts.json holds {constant}, which is not JSON")

    claims = json.loads((tmp_path / "p" / "verdicts.json").read_text(), parse_constant=strict)["claims"]
    assert {c["verdict"] for c in claims} <= {"supported", "not supported", "not testable"}
    # a grown grid reuses every finished setting
    monkeypatch.setattr(runner_module, "_rows", failing)  # counts the settings computed from here on
    calls.update(n=0, fail_at=-1)
    bigger = run_probe(trained, shapes, ProbeConfig(**{**SMALL, "k": [1, 2, 3]}), out_dir=tmp_path / "p",
                       progress=False)
    assert bigger.n_resumed == resumed.n_resumed + resumed.n_computed and calls["n"] == bigger.n_computed


def test_resume_refuses_a_folder_of_another_model(trained, shapes, tmp_path):
    cfg = ProbeConfig(scorers=["weight-norm"], k=[1], interventions=["zero"], random_control=False)
    run_probe(trained, shapes, cfg, out_dir=tmp_path / "p", progress=False)
    other = TinyCNN(widths=(4, 8))
    with pytest.raises(ConfigError, match="another model"):
        run_probe(other, shapes, cfg, out_dir=tmp_path / "p", progress=False)


def test_weight_threshold_settings(trained, shapes):
    result = probe(trained, shapes, scorer="weight-threshold", intervention=["zero", "mean-activation", "noise"],
                   fractions=[0.05], thinning=0.5, sigmas=[0.1], repeats=2)
    rows = result.rows
    assert set(rows["intervention"]) == {"zero", "noise"}  # activation edits cannot take single weights
    assert "mean-activation" in " ".join(result.skipped)
    assert rows["repeat"].nunique() == 2 and rows["selection_seed"].nunique() == 2
    n_weights = sum(m.weight.numel() for m in (trained.stages[0].conv, trained.stages[1].conv))
    counts = rows["units"].str.extract(r"^(\d+) weights")[0].astype(int)
    assert (counts < 0.05 * n_weights).all() and (counts > 0).all()  # thinned


def test_rewind_needs_a_source(trained, shapes):
    with pytest.raises(ConfigError, match="rewind"):
        probe(trained, shapes, scorer="weight-norm", k=1, intervention="rewind")
    source = {k: torch.zeros_like(v) for k, v in trained.state_dict().items()}
    zero = probe(trained, shapes, scorer="weight-norm", k=[1], intervention="zero", random_control=False).rows
    rewound = probe(trained, shapes, scorer="weight-norm", k=[1], intervention="rewind", rewind_source=source,
                    random_control=False).rows
    assert np.allclose(zero["acc_after"], rewound["acc_after"])  # rewinding to zeros is zeroing


def test_bad_options_are_config_errors(trained, shapes):
    with pytest.raises(ConfigError, match="did you mean 'repeats'"):
        probe(trained, shapes, scorer="weight-norm", repeat=3)
    with pytest.raises(ConfigError, match="unknown scorer"):
        probe(trained, shapes, scorer="weight-nrm")
    with pytest.raises(ConfigError, match="outside"):
        probe(trained, shapes, scorer="group-gradient", groups=[7])


def test_per_layer_and_activation_scorer_settings():
    ds = planted_dataset(visible=0.5, memorise=True)
    result = probe(memorising_model(), ds, scorer="activation", k=[1], intervention="zero-activation",
                   per_layer=[False, True], groups=[1], random_control=False)
    labels = set(result.rows["setting"])
    assert labels == {"activation[g1@train] k=1 zero-activation", "activation[g1@train] k=1 per-layer zero-activation"}
