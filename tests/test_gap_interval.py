"""The one-run interval of the memorisation gap (Newcombe's hybrid score interval of p1 - p2)."""

from __future__ import annotations

import pytest

from spurmem.memorization.gap import difference_interval, wilson_interval


def test_matches_newcombes_published_examples():
    # Newcombe (1998), Statistics in Medicine 17:873, Table II, method 10
    assert difference_interval(56 / 70, 70, 48 / 80, 80) == pytest.approx((0.0524, 0.3339), abs=1e-4)
    assert difference_interval(9 / 10, 10, 3 / 10, 10) == pytest.approx((0.1705, 0.8090), abs=1e-4)


def test_a_gap_between_perfect_accuracies_keeps_a_width():
    """Train 120/120 and test 250/250 (a majority group of a memorising model): the normal approximation
    gave [0, 0], claiming certainty from 370 examples."""
    lo, hi = difference_interval(1.0, 120, 1.0, 250)
    assert lo < -0.01 and hi > 0.01
    lo, hi = difference_interval(1.0, 120, 0.444, 250)
    assert lo < 0.556 < hi and hi < 1.0
    w_lo, w_hi = wilson_interval(0.0, 50, 1.96)
    assert w_lo == pytest.approx(0.0, abs=1e-12) and 0.05 < w_hi < 0.1
