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



def _per_run(seed: int, group: str, train: tuple[int, int], test: tuple[int, int]) -> dict:
    (c1, n1), (c2, n2) = train, test
    return {"run": f"s{seed}", "seed": seed, "group": int(group[1:]), "group_name": group, "train_acc": c1 / n1,
            "train_count": n1, "heldout_acc": c2 / n2, "heldout_count": n2, "gap": c1 / n1 - c2 / n2}


def test_identical_gaps_over_runs_keep_a_width():
    """Two seeds both at 100% train and 100% test on a group: the t-interval over runs was [0, 0]."""
    import pandas as pd

    from spurmem.memorization.gap import summarise_gaps

    runs = pd.DataFrame([_per_run(s, "g0", (120, 120), (250, 250)) for s in (0, 1)]
                        + [_per_run(s, "g1", (100, 120), (100 + 20 * s, 250)) for s in (0, 1)])
    summary = summarise_gaps(runs).set_index("group_name")
    same, spread = summary.loc["g0"], summary.loc["g1"]
    assert same.gap == 0 and same.gap_lo < -0.005 and same.gap_hi > 0.005
    assert (same.gap_lo, same.gap_hi) == pytest.approx(difference_interval(1.0, 240, 1.0, 500))
    assert "pooled" in same.interval
    assert spread.gap_lo < spread.gap < spread.gap_hi and "t-interval" in spread.interval
