"""The engine's prefix cache and the search's early rejection change speed, never results."""

from __future__ import annotations

import numpy as np
import pytest

from spurmem.metrics import predict
from spurmem.probes import scan_graph
from spurmem.probes.interventions import activation_means, intervene
from spurmem.probes.localize import localize
from spurmem.probes.scan import ScanEngine
from spurmem.probes.units import enumerate_units
from test_scan import _trained_small_cnn


@pytest.fixture(scope="module")
def cnn(shapes):
    return _trained_small_cnn(shapes)


@pytest.mark.parametrize("intervention,params", [("mean-activation", {}), ("zero", {}),
                                                 ("noise", {"sigma": 0.5, "seed": 2})])
def test_cached_scans_equal_uncached_ones_while_base_units_grow(shapes, cnn, intervention, params, monkeypatch):
    units = enumerate_units(cnn)
    if intervention == "mean-activation":
        params = {"means": activation_means(cnn, shapes, units, device="cpu")}
    prefixes = {"n": 0}
    run_prefix = scan_graph.FxSite.run_prefix

    def counted(self, x):
        prefixes["n"] += 1
        return run_prefix(self, x)

    monkeypatch.setattr(scan_graph.FxSite, "run_prefix", counted)
    # fixed chunks: measured ones may differ between the engines, and so may the margins' last bits
    cached = ScanEngine(cnn, shapes, batch_size=64, device="cpu", cache_mb=512, max_rows=2048)
    plain = ScanEngine(cnn, shapes, batch_size=64, device="cpu", cache_mb=0, max_rows=2048)
    subset = np.flatnonzero(shapes["train"].group.numpy() == 0)
    base = []
    calls = {}
    for extra in [None, units[-1], units[12], units[2]]:  # an edit late, then earlier and earlier
        if extra is not None:
            base.append(extra)
        for engine in (cached, plain):
            before = prefixes["n"]
            for _ in range(2):  # the search scans the same examples several times per step
                res = engine.scan(units, intervention, "train", base_units=base, indices=subset, **params)
            calls[engine is cached] = calls.get(engine is cached, 0) + prefixes["n"] - before
            if engine is cached:
                got = res
        assert got.correct.tolist() == res.correct.tolist()
        assert np.array_equal(got.margin_sum, res.margin_sum) and np.array_equal(got.loss_sum, res.loss_sum)
        assert got.base_correct.tolist() == res.base_correct.tolist()
    # repeats hit the cache; so do layers upstream of every edit, except for random edits (whose
    # draws depend on every edited layer before them, so any change of the base set invalidates)
    assert calls[True] == calls[False] / 2 if intervention == "noise" else calls[True] < calls[False] / 2


def test_cache_respects_its_budget(shapes, cnn):
    engine = ScanEngine(cnn, shapes, batch_size=64, device="cpu", cache_mb=0.05)
    units = enumerate_units(cnn)
    for split in ("train", "val", "test"):
        engine.scan(units, "zero", split)
    assert sum(size for _, size, _ in engine._prefix_cache.values()) <= 0.05 * 2**20
    engine.clear_cache()
    assert not engine._prefix_cache


def _reference_search(model, dataset, group, means, epsilon, steps):
    """The greedy search by copy-edit-predict: every candidate on every constrained example."""
    train_g, val_g = dataset["train"].group.numpy(), dataset["val"].group.numpy()
    majority = dataset.same_class_majority(group)
    sets = {"target": ("train", train_g == group), "major": ("train", train_g == majority),
            "val": ("val", val_g == group)}

    def accs(units):
        out = {}
        with intervene(model, units, "mean-activation", means=means) as edited:
            for name, (split, mask) in sets.items():
                p = predict(edited, dataset, split, device="cpu")
                out[name] = (p.correct[mask].sum() / mask.sum(), p.loss[mask].sum())
        return out

    start = accs([])
    chosen, remaining = [], list(enumerate_units(model))
    for _ in range(steps):
        if accs(chosen)["target"][0] <= start["target"][0] / 2:
            break
        scored = [(accs(chosen + [u]), u) for u in remaining]
        admissible = [(a["target"][0], -a["target"][1], i) for i, (a, u) in enumerate(scored)
                      if a["major"][0] >= start["major"][0] - epsilon - 1e-12
                      and a["val"][0] >= start["val"][0] - epsilon - 1e-12]
        if not admissible:
            break
        chosen.append(remaining.pop(min(admissible)[2]))
    return [u.id for u in chosen]


def test_search_equals_the_exhaustive_reference(shapes, cnn):
    """Early rejection and the candidate-by-candidate last constraint pick the same units as checking
    every candidate on every example (epsilon small enough that constraints bind), for every minority
    group; at least one group's search must take two steps or more, or the test compares nothing."""
    means = activation_means(cnn, shapes, enumerate_units(cnn), device="cpu")
    lengths = []
    for minority in [g for g in range(shapes.n_groups) if shapes.is_minority(g)]:
        result = localize(cnn, shapes, minority, device="cpu", max_steps=4, epsilon=0.02, control=False,
                          batch_size=32, means=means)
        reference = _reference_search(cnn, shapes, minority, means, 0.02, 4)
        assert result.search.units == reference, f"group {minority}"
        lengths.append(len(reference))
    assert max(lengths) >= 2
