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
