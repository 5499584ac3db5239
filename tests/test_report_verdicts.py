"""The framework verdict (docs/method.md §6) read from a comparison, and the verdict table's place in the report."""

from __future__ import annotations

import pytest

from runs_fixture import make_comparison
from spurmem.report.html import INCONCLUSIVE, NOT_SUPPORTED, NOT_TESTABLE, NOT_TESTED, SUPPORTED, Verdict
from spurmem.report.inputs import find_comparisons
from spurmem.report.verdicts import framework_verdict


def _verdict(tmp_path, seeds, wga):
    make_comparison(tmp_path, seeds=seeds, wga=wga)
    return framework_verdict(find_comparisons([tmp_path]))


def test_framework_clearly_better_is_supported(tmp_path):
    v = _verdict(tmp_path, (0, 1, 2), {"erm": 0.40, "erm-continue": 0.42, "spurmem": 0.60})
    assert v.status == SUPPORTED
    assert "spurmem 61.0 ± 1.0" in v.statistic and "vs erm-continue" in v.statistic and "p = " in v.statistic


def test_framework_no_better_than_control_is_not_supported(tmp_path):
    v = _verdict(tmp_path, (0, 1, 2), {"erm": 0.30, "erm-continue": 0.60, "spurmem": 0.55})
    assert v.status == NOT_SUPPORTED
    assert v.outcome.startswith("not better than the plain fine-tuning control; best in this comparison: erm-continue")


def test_one_seed_is_inconclusive_not_a_verdict(tmp_path):
    v = _verdict(tmp_path, (0,), {"erm": 0.30, "erm-continue": 0.30, "spurmem": 0.90})
    assert v.status == INCONCLUSIVE and "n = 1 seed" in v.statistic


def test_no_comparison_is_not_tested(tmp_path):
    v = framework_verdict(find_comparisons([tmp_path]))
    assert v.status == NOT_TESTED and "spurmem compare" in v.source


def test_unknown_status_is_refused():
    with pytest.raises(ValueError, match="not one of"):
        Verdict("claim", "probably", "")


def _scan_verdict(tmp_path, top_1pct, flips=None, models=None, base=None):
    import json

    from runs_fixture import make_memorization, make_run
    from spurmem.report.runs import read_run
    from spurmem.report.verdicts import localisation_verdict

    run = make_run(tmp_path, "erm-s0")
    out = make_memorization(run)
    summary = json.loads((out / "units_summary.json").read_text())
    summary["top_shares"]["top_1pct"] = top_1pct
    if base is not None:
        summary["base_minority_train_acc"], summary["base_minority_heldout_acc"] = base
    (out / "units_summary.json").write_text(json.dumps(summary))
    if flips is not None or models is not None:
        (out / "examples_summary.json").write_text(json.dumps({"flips": flips or {}, **({"models": models} if models
                                                                                      else {})}))
    return localisation_verdict([read_run(run)])


def test_localisation_needs_both_shares_beyond_the_null(tmp_path):
    assert _scan_verdict(tmp_path / "a", top_1pct=0.30).status == SUPPORTED
    v = _scan_verdict(tmp_path / "b", top_1pct=0.15)  # below the null's 95% bound (0.2)
    assert v.status == NOT_SUPPORTED and v.outcome.startswith("not concentrated")


def test_localisation_outcome_reports_flips_only_when_defined(tmp_path):
    v = _scan_verdict(tmp_path / "a", 0.30, {"all": {"flipped": 12, "mem_flipped": 0.6, "mem_not_flipped": 0.1}})
    assert "flips 12 training examples of mean example-level memorisation 0.60, vs 0.10" in v.outcome
    v = _scan_verdict(tmp_path / "b", 0.30, {"all": {"flipped": 0, "mem_flipped": float("nan"),
                                                     "mem_not_flipped": 0.1}})
    assert "flips" not in v.outcome and "nan" not in v.outcome


def _set_wga(root, values):
    """Overwrite every run's test WGA in ROOT/comparison.json: ``values[alg]`` is one number per seed."""
    import json

    path = root / "comparison.json"
    data = json.loads(path.read_text())
    seen: dict[str, int] = {}
    for run in data["runs"]:
        i = seen.get(run["algorithm"], 0)
        seen[run["algorithm"]] = i + 1
        run["test/worst_group_accuracy"] = values[run["algorithm"]][i]
    path.write_text(json.dumps(data))


def test_every_wga_zero_is_not_testable_not_a_p_value(tmp_path):
    make_comparison(tmp_path, seeds=(0, 1))
    _set_wga(tmp_path, {"erm": [0.0, 0.0], "erm-continue": [0.0, 0.0], "spurmem": [0.0, 0.0], "dfr": [0.4, 0.41]})
    v = framework_verdict(find_comparisons([tmp_path]))
    assert v.status == NOT_TESTABLE and "floor" in v.outcome
    assert "p = 1.000" not in v.statistic


def test_zero_variance_away_from_the_floor_is_not_testable(tmp_path):
    make_comparison(tmp_path, seeds=(0, 1))
    _set_wga(tmp_path, {"erm": [0.3, 0.3], "erm-continue": [0.3, 0.3], "spurmem": [0.3, 0.3], "dfr": [0.3, 0.3]})
    v = framework_verdict(find_comparisons([tmp_path]))
    assert v.status == NOT_TESTABLE and "zero variance" in v.outcome


def test_the_best_method_of_the_comparison_is_named(tmp_path):
    v = _verdict(tmp_path, (0, 1, 2), {"erm": 0.30, "erm-continue": 0.31, "spurmem": 0.32, "dfr": 0.72})
    assert "best in this comparison: dfr" in v.statistic and "40.0 points above spurmem" in v.statistic
    assert "dfr" in v.outcome
    v = _verdict(tmp_path / "b", (0, 1, 2), {"erm": 0.40, "erm-continue": 0.42, "spurmem": 0.60, "dfr": 0.5})
    assert "best in this comparison" not in v.statistic


def test_probe_claim_status_is_read_as_written(tmp_path):
    import json

    from runs_fixture import make_probe, make_run
    from spurmem.report.runs import read_run
    from spurmem.report.verdicts import probe_verdicts

    run = make_run(tmp_path, "erm-s0")
    out = make_probe(run)
    data = json.loads((out / "verdicts.json").read_text())
    for c in data["claims"]:
        c.update(verdict="not testable", supported=False)
    (out / "verdicts.json").write_text(json.dumps(data))
    assert {v.status for v in probe_verdicts([read_run(run)])} == {NOT_TESTABLE}


def test_example_scores_from_two_models_are_flagged_not_testable(tmp_path):
    from spurmem.memorization.examples import MIN_MODELS, testability

    assert testability(MIN_MODELS) is None and "one of 3 values from -1 to 1 in steps of 1" in testability(2)
    v = _scan_verdict(tmp_path, 0.30, {"all": {"flipped": 12, "mem_flipped": 0.6, "mem_not_flipped": 0.1}}, models=2)
    assert "example-level memorisation not testable: 2 half-data model(s)" in v.outcome and "flips 12" not in v.outcome


def test_localisation_is_not_testable_without_memorisation_to_find(tmp_path):
    v = _scan_verdict(tmp_path, 0.30, base=(0.125, 0.0))
    assert v.status == NOT_TESTABLE and "no memorisation to find" in v.outcome


def test_the_random_band_in_the_probe_curves_is_the_range_of_the_draws(tmp_path):
    import pandas as pd

    from runs_fixture import make_probe, make_run
    from spurmem.report.inputs import find_probes, probe_curves

    run = make_run(tmp_path, "erm-s0")
    out = make_probe(run)
    summary = pd.read_csv(out / "summary.csv")
    summary["draws_lo"], summary["draws_hi"] = summary["drop_mean"] - 0.3, summary["drop_mean"] + 0.4
    summary.to_csv(out / "summary.csv", index=False)
    from spurmem.report.runs import read_run

    probe = find_probes(read_run(run))[0]
    rows = probe_curves(probe, summary["intervention"].iloc[0])
    rnd, other = rows[rows.scorer == "random"], rows[rows.scorer != "random"]
    assert len(rnd) and ((rnd.ci_high - rnd.drop_mean).round(6) == 0.4).all()
    assert ((other.ci_high - other.drop_mean).round(6) != 0.4).all()
