"""The scan engine's measured chunk size and plain fallback: the results never depend on them."""

from __future__ import annotations

import numpy as np
import pytest

from spurmem.data import iterate_batches
from spurmem.probes import scan, scan_tune
from spurmem.probes.scan import ScanEngine
from spurmem.probes.scan_tune import ChunkTuner, RowTuner
from spurmem.probes.units import enumerate_units, get_module
from probe_models import CheapStem, train_briefly
from test_scan import _trained_small_cnn, assert_agree, naive_counts


@pytest.fixture(scope="module")
def cnn(shapes):
    return _trained_small_cnn(shapes, widths=(8, 16, 16, 16))


def test_tuned_chunks_give_the_counts_of_fixed_chunks_and_the_naive_loop(shapes, cnn):
    units = enumerate_units(cnn)
    tuned = ScanEngine(cnn, shapes, batch_size=16, device="cpu")
    res = tuned.scan(units, "zero", "train", per_example=True)
    fixed = ScanEngine(cnn, shapes, batch_size=16, device="cpu", max_rows=48).scan(units, "zero", "train")
    assert res.correct.tolist() == fixed.correct.tolist()
    assert res.pred_count.tolist() == fixed.pred_count.tolist()
    assert_agree(res, naive_counts(cnn, shapes, "train", [[u] for u in units], "zero"))
    assert set(res.layer_scans) == {u.layer for u in units}
    for layer, info in res.layer_scans.items():
        assert info.how in ("tuned", "tuning") and info.units == sum(u.layer == layer for u in units)
        assert info.per_unit_seconds and info.variant_seconds > 0 and info.prefix_seconds > 0
        assert info.plain or info.rows % 16 == 0
    assert {i.how for i in fixed.layer_scans.values()} == {"fixed"}
    again = tuned.scan(units, "zero", "train")  # the choice is kept: no second search
    assert again.correct.tolist() == res.correct.tolist()
    assert all(again.layer_scans[layer].how == "cached" for layer, i in res.layer_scans.items() if i.how == "tuned")


def test_plain_fallback_gives_the_same_counts(shapes, cnn, monkeypatch):
    monkeypatch.setattr(scan_tune, "PLAIN_MARGIN", float("inf"))  # plain passes win wherever timed,
    monkeypatch.setattr(ChunkTuner, "note_prefix", lambda self, s: setattr(self, "prefix", 0.0))  # and are timed
    units = enumerate_units(cnn)
    for intervention in ("zero", "zero-activation"):
        res = ScanEngine(cnn, shapes, batch_size=16, device="cpu").scan(units, intervention, "val")
        timed = [layer for layer, i in res.layer_scans.items() if "plain" in i.per_unit_seconds]
        decided = [layer for layer, i in res.layer_scans.items() if i.how == "tuned"]
        assert decided and set(decided) <= set(timed) == set(res.plain_layers)
        assert_agree(res, naive_counts(cnn, shapes, "val", [[u] for u in units], intervention))


def test_tuner_respects_memory_mb(shapes, cnn):
    units = enumerate_units(cnn)
    layer = units[0].layer
    x = next(iterate_batches(shapes["train"], 16, shapes.mean, shapes.std)).x
    site_bytes = get_module(cnn, layer)(x).numel() * 4  # one variant of a batch of 16
    budget = 3.5 * site_bytes
    engine = ScanEngine(cnn, shapes, batch_size=16, device="cpu", memory_mb=budget / 2**20)
    res = engine.scan(units, "zero", "train")
    tried = [int(r) for r in res.layer_scans[layer].per_unit_seconds if r != "plain"]
    assert engine._tuners[(layer, layer)].candidates[-1] == 3  # the largest size that fits, nothing above
    assert tried and max(tried) <= 3 * 16
    big = ScanEngine(cnn, shapes, batch_size=16, device="cpu").scan(units, "zero", "train")
    assert res.correct.tolist() == big.correct.tolist()


def test_doubling_search_stops_at_the_first_slower_size():
    tuner = ChunkTuner(b=100, k_cap=100, plain=False)
    assert tuner.candidates == [1, 2, 5, 10, 20, 40]
    for k, seconds in [(1, 1.0), (2, 1.6), (5, 4.5)]:  # per unit: 1.0, 0.8, 0.9
        assert tuner.chunk(remaining=50, b=100, total=500) == (k, True)
        tuner.record(k, seconds)
    assert tuner.done and tuner.rows == 200 and not tuner.use_plain
    assert tuner.chunk(remaining=50, b=50, total=500) == (4, False)  # same rows at another batch size
    few = ChunkTuner(b=100, k_cap=100, plain=False)
    few.record(1, 1.0)
    assert few.chunk(remaining=3, b=100, total=3) == (2, True)
    few.record(2, 1.0)
    assert few.chunk(remaining=3, b=100, total=3) == (3, True)  # capped at the layer's units: the last size
    few.record(3, 1.2)
    assert few.done and few.rows == 300
    capped = ChunkTuner(b=100, k_cap=2, plain=True)
    assert capped.candidates == [1, 2]
    capped.note_prefix(0.5)
    capped.record(1, 1.0)
    capped.record(2, 1.8)
    assert capped.done and capped.want_plain and not capped.use_plain  # 0.9 s/unit > the 0.5 s prefix
    capped.record_plain(0.7)
    assert capped.use_plain and not capped.want_plain
    cheap = ChunkTuner(b=100, k_cap=2, plain=True)
    cheap.note_prefix(2.0)
    cheap.record(1, 1.0)
    cheap.record(2, 1.8)
    assert cheap.done and not cheap.want_plain  # a plain pass costs more than the prefix alone


@pytest.fixture(scope="module")
def stem_model(shapes):
    return train_briefly(CheapStem(n_classes=shapes.n_classes), shapes)


def _count_edits(monkeypatch):
    """Wrap the engine's ``intervene``: the single units it edits, in order."""
    calls = []
    real = scan.intervene

    def counting(model, target, *args, **kwargs):
        target = list(target)
        if len(target) == 1:
            calls.append(target[0].id)
        return real(model, target, *args, **kwargs)

    monkeypatch.setattr(scan, "intervene", counting)
    return calls


def _spy(runner, name: str) -> list:
    seen, real = [], getattr(runner, name)
    setattr(runner, name, lambda *a, **k: seen.append(1) or real(*a, **k))
    return seen


def test_stem_layer_goes_straight_to_plain_passes(shapes, stem_model, monkeypatch):
    units = enumerate_units(stem_model)
    stem = [u for u in units if u.layer == "stem"]
    assert len(stem) == 4 and len(units) > len(stem)
    engine = ScanEngine(stem_model, shapes, batch_size=16, device="cpu")  # 13 batches of train
    runner = engine.site("stem", "stem")
    prefixes, stacks = _spy(runner, "run_prefix"), _spy(runner, "run_variants")
    calls = _count_edits(monkeypatch)
    relu = engine.model.relu  # in place in the caller's model, out of place in the engine's copy
    modes = []
    relu.register_forward_hook(lambda m, i, o: modes.append(m.inplace))
    res = engine.scan(units, "zero", "train", per_example=True)
    assert set(modes) == {True, False} and not relu.inplace  # in place again only in plain passes
    info = res.layer_scans["stem"]
    assert info.how == "graph" and info.plain and info.rows is None and res.plain_layers == ["stem"]
    assert info.saved_share < scan_tune.PLAIN_SHARE and "plain passes" in info.why
    assert info.plain_rows == 16 and "16 examples per plain call" in info.why  # PLAIN_ROWS capped at the batch
    assert info.per_unit_seconds == {} and info.prefix_seconds == 0 and info.variant_seconds > 0  # nothing timed
    assert prefixes == [] and stacks == []  # no prefix pass, no stacked chunk
    assert calls == [u.id for u in stem]  # each stem unit edited once for all 13 batches; the rest stacked
    assert all(res.layer_scans[layer].saved_share >= scan_tune.PLAIN_SHARE for layer in res.layer_scans if layer != "stem")
    stacked = ScanEngine(stem_model, shapes, batch_size=16, device="cpu", max_rows=32).scan(units, "zero", "train")
    assert stacked.layer_scans["stem"].how == "fixed" and stacked.layer_scans["stem"].rows == 32  # max_rows wins
    assert res.correct.tolist() == stacked.correct.tolist() and res.pred_count.tolist() == stacked.pred_count.tolist()
    assert_agree(res, naive_counts(stem_model, shapes, "train", [[u] for u in units], "zero"))
    assert (res.correct[:len(stem)] != res.base_correct[None, :]).any()  # the stem's edits do change counts
    act = engine.scan(stem, "zero-activation", "val")
    assert act.layer_scans["stem"].how == "graph"
    assert_agree(act, naive_counts(stem_model, shapes, "val", [[u] for u in stem], "zero-activation"))


def test_plain_passes_edit_each_unit_once(shapes, cnn, monkeypatch):
    monkeypatch.setattr(scan_tune, "PLAIN_MARGIN", float("inf"))  # plain passes win wherever timed,
    monkeypatch.setattr(ChunkTuner, "note_prefix", lambda self, s: setattr(self, "prefix", 0.0))  # and are timed
    calls = _count_edits(monkeypatch)
    units = enumerate_units(cnn)
    res = ScanEngine(cnn, shapes, batch_size=16, device="cpu").scan(units, "zero", "train")  # 13 batches
    assert res.plain_layers
    plain_units = [u.id for u in units if u.layer in res.plain_layers]
    assert sorted(calls) == sorted(plain_units)  # once per unit, not once per unit and batch
    fixed = ScanEngine(cnn, shapes, batch_size=16, device="cpu", max_rows=48).scan(units, "zero", "train")
    assert res.correct.tolist() == fixed.correct.tolist() and res.pred_count.tolist() == fixed.pred_count.tolist()
    np.testing.assert_allclose(res.margin_sum, fixed.margin_sum, rtol=1e-4, atol=1e-3)


def test_plain_rows_search_stops_at_the_first_slower_size():
    tuner = RowTuner(b=100)
    assert tuner.candidates == [16, 32, 64, 100]
    tuner.record(16, 1.6)  # 0.1 s per example
    tuner.record(7, 0.1)  # the end of a batch: measures nothing
    assert tuner.rows == 32 and not tuner.done
    tuner.record(32, 2.88)  # 0.09
    tuner.record(64, 6.4)  # 0.1: slower, so 32 it is
    assert tuner.done and tuner.rows == 32 and sorted(tuner.per_example) == [16, 32, 64]
    assert "32 examples per plain call" in tuner.describe()
    whole = RowTuner(b=8)
    assert whole.candidates == [8]
    whole.record(8, 1.0)
    assert whole.done and whole.rows == 8
