"""The framework verdict (SPEC 6) read from a comparison, and the verdict table's place in the report."""

from __future__ import annotations

import pytest

from runs_fixture import make_comparison
from spurmem.report.html import INCONCLUSIVE, NOT_SUPPORTED, NOT_TESTED, SUPPORTED, Verdict
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
    assert v.outcome == "not better than the plain fine-tuning control"


def test_one_seed_is_inconclusive_not_a_verdict(tmp_path):
    v = _verdict(tmp_path, (0,), {"erm": 0.30, "erm-continue": 0.30, "spurmem": 0.90})
    assert v.status == INCONCLUSIVE and "n = 1 seed" in v.statistic


def test_no_comparison_is_not_tested(tmp_path):
    v = framework_verdict(find_comparisons([tmp_path]))
    assert v.status == NOT_TESTED and "spurmem compare" in v.source


def test_unknown_status_is_refused():
    with pytest.raises(ValueError, match="not one of"):
        Verdict("claim", "probably", "")


def _scan_verdict(tmp_path, top_1pct, flips=None):
    import json

    from runs_fixture import make_memorization, make_run
    from spurmem.report.runs import read_run
    from spurmem.report.verdicts import localisation_verdict

    run = make_run(tmp_path, "erm-s0")
    out = make_memorization(run)
    summary = json.loads((out / "units_summary.json").read_text())
    summary["top_shares"]["top_1pct"] = top_1pct
    (out / "units_summary.json").write_text(json.dumps(summary))
    if flips is not None:
        (out / "examples_summary.json").write_text(json.dumps({"flips": flips}))
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
