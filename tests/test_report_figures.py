"""Figure functions on edge cases: missing columns are named, degenerate inputs still draw honestly."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from spurmem.report import figures as F

PROV = F.Provenance("train", [0, 1], "validation worst-group accuracy", "per-group accuracy")


def _png_size(fig: F.ReportFigure) -> tuple[int, int]:
    return Image.open(io.BytesIO(fig.png)).size


@pytest.mark.parametrize("fn", [F.plot_memorization_gap, F.plot_probe_curves, F.plot_group_matrix,
                                F.plot_cumulative_share, F.plot_layer_memorization, F.plot_algorithm_comparison])
def test_missing_columns_are_named(fn):
    with pytest.raises(ValueError, match=r"lacks column\(s\)"):
        fn(pd.DataFrame({"unrelated": [1]}), PROV)


def test_cumulative_share_without_positive_scores_says_so():
    fig = F.plot_cumulative_share(pd.DataFrame({"unit": ["a:0", "a:1"], "score": [-0.1, 0.0]}), PROV)
    assert "No unit has a positive score" in fig.caption and _png_size(fig)[0] > 300


def test_cumulative_share_annotates_the_top_shares():
    scores = pd.DataFrame({"unit": [f"u{i}" for i in range(100)], "score": [10.0] + [0.0] * 99})
    fig = F.plot_cumulative_share(scores, PROV)
    assert "over 100 units" in fig.caption


def test_provenance_counts_distinct_seeds_and_says_when_none():
    assert "Seeds: 0, 1 (n=2)" in F.Provenance("test", [1, 0, 1]).text()
    assert "Seeds: not recorded (n=0)" in F.Provenance("test", [None]).text()


def test_example_grid_takes_grayscale_and_colour():
    gray = np.random.default_rng(0).integers(0, 255, (5, 12, 12), dtype=np.uint8)
    colour = np.random.default_rng(0).integers(0, 255, (5, 3, 12, 12), dtype=np.uint8)
    for images in (gray, colour):
        fig = F.plot_example_grid(images, [f"x{i}" for i in range(5)], PROV, "grid")
        assert _png_size(fig)[0] > 300
    with pytest.raises(ValueError, match="no images"):
        F.plot_example_grid(np.zeros((0, 3, 4, 4), np.uint8), [], PROV, "grid")


def test_comparison_single_seed_has_no_error_bar_but_draws():
    comp = pd.DataFrame({"algorithm": ["erm", "spurmem"], "metric": ["test WGA"] * 2, "mean": [0.4, 0.5],
                         "std": [np.nan, np.nan], "n_seeds": [1, 1]})
    fig = F.plot_algorithm_comparison(comp, PROV)
    assert "one seed, so no error bars" in fig.caption
