"""Unit-level memorisation, the group gap and the Feldman estimator, on planted and tiny trained models."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from memorizer_models import MINORITY, planted_model
from spurmem.cli import main
from spurmem.memorization import concentration, gap_report, top_share, unit_memorization
from spurmem.memorization.examples import estimate, example_memorization, half_splits
from spurmem.probes.verdicts import LABELS
from spurmem.train import TrainConfig, read_history, train

TINY = {"dataset": "synthetic-shapes", "dataset_params": {"n_train": 200, "n_val": 80, "n_test": 80, "size": 12},
        "model": "small-cnn", "model_params": {"widths": [4, 8, 8, 8]}, "batch_size": 50, "eval_batch_size": 200}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shapes):
    root = tmp_path_factory.mktemp("runs")
    out = []
    for seed in (0, 1):
        cfg = TrainConfig(name=f"tiny{seed}", seed=seed, epochs=2, **TINY)
        out.append(train(cfg, run_dir=root / f"tiny{seed}", dataset=shapes, progress=False).run_dir)
    return out


def test_planted_memorisers_rank_first_with_exact_shares(shapes):
    model, chunks = planted_model(shapes)
    result = unit_memorization(model, shapes, device="cpu", null_draws=200)
    r = result.ranked
    assert set(r.unit[:2]) == {"memory:2", "memory:3"}
    pooled_minority_train = shapes.train_group_counts[shapes.minority_groups].sum()
    assert r.score[:2].tolist() == pytest.approx([5 / pooled_minority_train] * 2)
    assert (r.heldout_drop[:2] == 0).all()
    assert r[f"score_g{MINORITY}"][:2].tolist() == pytest.approx([0.5, 0.5])
    # each template neuron holds one example; positive mass = 2 * 5 + 10 * 1 examples
    positive = np.clip(r.score, 0, None)
    assert positive.sum() == pytest.approx(20 / pooled_minority_train)
    assert result.summary["top_shares"]["top_1pct"] == pytest.approx(0.25)
    assert result.summary["top_shares"]["top_10pct"] == pytest.approx(0.5)
    layers = result.layers.set_index("layer")
    assert layers.loc["memory", "share"] == pytest.approx(0.5) and layers.loc["templates", "share"] == pytest.approx(0.5)
    assert result.curve.cumulative_share.iloc[-1] == pytest.approx(1.0)
    assert len(result.groups) == len(r) * shapes.n_groups
    # per-unit verdicts: the memorisers are named as such, beyond the held-out-vs-held-out control
    assert r.verdict[:2].tolist() == ["localised memorisation"] * 2
    assert (r.majority_train_drop[:2] == 0).all()
    assert result.summary["heldout_vs_heldout"]["units_beyond_control"] >= 2


def test_symmetric_noise_is_not_called_concentrated():
    rng = np.random.default_rng(3)
    score = rng.normal(0, 0.01, size=400)
    curve, shares, null = concentration(score, null_draws=300, seed=1)
    for key in ("top_1pct", "top_10pct"):
        assert null[key]["null_lo"] <= shares[key] <= null[key]["null_hi"]
        assert null[key]["p_value"] > 0.05
    from spurmem.memorization.units import _statement

    summary = {"total_positive_score": 1.0, "top_shares": shares, "null": null}
    assert "NOT concentrated" in _statement(summary)


def test_one_dominant_unit_is_concentrated():
    score = np.r_[1.0, np.random.default_rng(0).normal(0, 0.001, 299)]
    assert top_share(score, 0.01) > 0.9
    curve, shares, null = concentration(score, null_draws=200)
    assert shares["top_1pct"] > null["top_1pct"]["null_hi"] or null["top_1pct"]["p_value"] <= 0.55


def test_gap_single_run_and_over_seeds(runs):
    one = gap_report(runs[:1], epoch="last")
    last = read_history(runs[0])[-1]["groups"]
    for g in range(4):
        row = one.runs[one.runs.group == g].iloc[0]
        assert row.gap == pytest.approx(last["train"][g]["accuracy"] - last["test"][g]["accuracy"])
        assert row.gap_lo <= row.gap <= row.gap_hi
    assert one.summary.interval.iloc[0].endswith("Newcombe score (one run)")
    two = gap_report(runs, epoch="last")
    s = two.summary.set_index("group")
    gaps = two.runs.pivot(index="run", columns="group", values="gap")
    for g in range(4):
        half = stats.t.ppf(0.975, 1) * gaps[g].std(ddof=1) / np.sqrt(2)
        assert s.loc[g, "gap"] == pytest.approx(gaps[g].mean())
        if gaps[g].std(ddof=1) > 0:
            assert s.loc[g, "gap_hi"] - s.loc[g, "gap"] == pytest.approx(half)
        else:  # identical gaps: the pooled-count interval, never zero width
            assert "pooled" in s.loc[g, "interval"] and s.loc[g, "gap_hi"] - s.loc[g, "gap_lo"] > 0.01


def test_feldman_estimator_on_a_known_matrix():
    included = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 0], [0, 1, 1]], dtype=bool)
    correct = np.array([[1, 1, 1], [0, 1, 1], [1, 0, 0], [0, 1, 1]], dtype=bool)
    table = estimate(correct, correct.astype(float), included)
    assert table.mem.tolist() == pytest.approx([1.0, 1 - 0.5, 1.0 - 0.5])
    splits = half_splits(11, 4, seed=2)
    inc = np.zeros((4, 11), dtype=bool)
    for m, idx in enumerate(splits):
        inc[m, idx] = True
    assert (inc[0] ^ inc[1]).all() and (inc[2] ^ inc[3]).all()  # complementary pairs
    with pytest.raises(ValueError):
        half_splits(10, 3)


def test_feldman_end_to_end_tiny(shapes, tmp_path):
    cfg = TrainConfig(name="tiny", epochs=1, **TINY)
    result = example_memorization(cfg, shapes, tmp_path, models=4, device="cpu")
    ex = result.examples
    assert len(ex) == len(shapes["train"]) and (ex.n_in == 2).all() and (ex.n_out == 2).all()
    assert ex.mem.between(-1, 1).all()
    assert result.groups["count"].sum() == len(ex)
    subsets = [json.loads((tmp_path / "halves" / f"model_{m:02d}.subset.json").read_text()) for m in range(4)]
    assert sorted(subsets[0]["train_indices"] + subsets[1]["train_indices"]) == list(range(len(ex)))
    stamp = (tmp_path / "halves" / "model_00" / "run.json").stat().st_mtime_ns
    again = example_memorization(cfg, shapes, tmp_path, models=4, device="cpu")  # resumes: nothing retrained
    assert (tmp_path / "halves" / "model_00" / "run.json").stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(again.examples, ex)


def test_screened_report_equals_exact_when_nothing_is_cleared_and_says_what_ran(shapes, runs, tmp_path):
    """The planted memorisers are found by a screened scan too; with a factor that clears nothing
    (bar pairs known unchanged) the scores equal the exact scan's; the summary reports the screen."""
    from spurmem.probes.scan import Screen

    model, _ = planted_model(shapes)
    exact = unit_memorization(model, shapes, device="cpu", null_draws=50)
    strict = unit_memorization(model, shapes, device="cpu", null_draws=50, screen=Screen(factor=1e12, calibration=4))
    pd.testing.assert_frame_equal(strict.ranked[["unit", "score", "train_drop", "heldout_drop"]],
                                  exact.ranked[["unit", "score", "train_drop", "heldout_drop"]])
    default = unit_memorization(model, shapes, device="cpu", null_draws=50, screen=Screen())
    assert set(default.ranked.unit[:2]) == {"memory:2", "memory:3"}
    screen = default.summary["screen"]
    assert set(screen) == {"train", "test", "val"}
    assert all(s["pairs"] == len(default.ranked) * len(shapes[split]) for split, s in screen.items())
    assert "screened scan:" in default.summary["statement"]
    assert default.summary["scan"]["train"]["engine"] == "fx-screened"
    assert "screen" not in exact.summary and exact.summary["scan"]["train"]["engine"] == "fx"
    run = runs[1]
    assert main(["memorization", "units", str(run), "--null-draws", "20", "--device", "cpu", "--screen",
                 "--screen-factor", "3", "--calibration", "5", "--audit-units", "2"]) == 0
    summary = json.loads((run / "memorization" / "units_summary.json").read_text())
    assert summary["screen"]["train"]["factor"] == 3 and summary["screen"]["train"]["calibration_examples"] == 5
    assert len(summary["screen"]["train"]["audit_units"]) == 2


def test_cli_units_gap_and_localize(runs, capsys):
    run = runs[0]
    assert main(["memorization", "units", str(run), "--null-draws", "50", "--device", "cpu"]) == 0
    ranked = pd.read_csv(run / "memorization" / "units_ranked.csv")
    assert len(ranked) == 4 + 8 + 8 + 8
    summary = json.loads((run / "memorization" / "units_summary.json").read_text())
    if summary["total_positive_score"] > 0:
        assert summary["top_shares"]["top_10pct"] == pytest.approx(top_share(ranked.score.to_numpy(), 0.10))
    assert (run / "memorization" / "units_curve.png").stat().st_size > 1000
    assert main(["memorization", "gap", *map(str, runs), "--epoch", "last"]) == 0
    assert len(pd.read_csv(run / "memorization" / "gap_summary.csv")) == 4
    assert main(["probe", "localize", str(run), "--group", "1", "--max-steps", "2", "--device", "cpu"]) == 0
    out = json.loads((run / "localize" / "group-1" / "summary.json").read_text())
    assert out["verdict"]["label"] in LABELS and out["group"] == 1
    traj = pd.read_csv(run / "localize" / "group-1" / "trajectory.csv")
    assert set(traj.split) == {"train", "val", "test"}
    assert "verdict" in capsys.readouterr().out


def test_flips_vs_memorization_reads_the_order():
    from spurmem.memorization.examples import flips_vs_memorization

    flips = pd.DataFrame({"index": range(6), "group": [1, 1, 1, 0, 0, 0], "correct_before": [True] * 5 + [False],
                          "first_flip_k": [1.0, 2.0, np.nan, np.nan, 3.0, 1.0]})
    examples = pd.DataFrame({"index": range(6), "mem": [0.9, 0.5, 0.0, 0.0, 0.2, 1.0]})
    out = flips_vs_memorization(flips, examples)
    assert out["all"]["examples"] == 5 and out["all"]["flipped"] == 3  # the example wrong before is left out
    assert out["g1"]["mem_flipped"] == pytest.approx(0.7) and out["g1"]["mem_not_flipped"] == 0.0
    assert out["g1"]["spearman_mem_vs_early_flip"] == pytest.approx(1.0)  # earlier flip, higher score


def test_localize_searches_only_the_layers_asked(runs, capsys):
    """--layers bounds the greedy search's candidates (every step scans every candidate); a pattern
    matching no layer is one line naming the layers there are."""
    from spurmem.probes.units import candidate_layers
    from spurmem.train import load_run

    run = runs[0]
    names = [layer.name for layer in candidate_layers(load_run(run, epoch="last").model)]
    last = names[-1]
    assert main(["probe", "localize", str(run), "--group", "1", "--max-steps", "3", "--no-control", "--device", "cpu",
                 "--layers", last, "--out", "last-layer"]) == 0
    out = run / "localize" / "last-layer"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["layers"] == [last] and summary["config"]["candidates"] == 8
    chosen = pd.read_csv(out / "steps.csv").unit.dropna()
    assert len(chosen) == 3 and all(u.startswith(f"{last}:") for u in chosen)
    capsys.readouterr()
    assert main(["probe", "localize", str(run), "--group", "1", "--layers", "nosuch*", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "'nosuch*'" in err and names[0] in err and len(err.strip().splitlines()) == 1
