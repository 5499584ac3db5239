"""The screened scan: its exact part equals the exact engine, its estimates are first-order right,
what it clears is counted once, and its audit counts exactly the flips it would have missed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from spurmem.probes.interventions import activation_means, intervene
from spurmem.probes.scan import ScanEngine, Screen
from spurmem.probes.scan_screen import ScreenPass, ScreenReport
from spurmem.probes.units import Unit, enumerate_units
from probe_models import small_stem_resnet18
from test_scan import _trained_small_cnn

EVERYTHING_EXACT = Screen(factor=1e12, calibration=4, audit_units=2)


@pytest.fixture(scope="module")
def cnn(shapes):
    return _trained_small_cnn(shapes)


def _same(a, b):
    assert (a.correct == b.correct).all()
    assert (a.pred_count == b.pred_count).all()
    assert (a.example_correct == b.example_correct).all()
    np.testing.assert_allclose(a.margin_sum, b.margin_sum, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(a.loss_sum, b.loss_sum, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("intervention,params", [
    ("zero", {}), ("zero-activation", {}), ("noise", {"sigma": 0.5, "seed": 1}), ("reinit", {"sigma": 0.3, "seed": 4}),
])
def test_pairs_run_exactly_equal_the_exact_engine(shapes, cnn, intervention, params):
    engine = ScanEngine(cnn, shapes, batch_size=64, device="cpu")
    exact = engine.scan(None, intervention, "train", per_example=True, **params)
    screened = engine.scan(None, intervention, "train", per_example=True, screen=EVERYTHING_EXACT, **params)
    report = screened.screen  # only pairs known to be unchanged are not run
    assert screened.engine == "fx-screened" and report.exact_pairs + report.known_unchanged == report.pairs
    _same(screened, exact)


def test_mean_activation_pairs_and_a_resnet(shapes):
    model = small_stem_resnet18(seed=1)
    units = enumerate_units(model)[::97]
    engine = ScanEngine(model, shapes, batch_size=16, device="cpu")
    idx = np.arange(20)
    exact = engine.scan(units, "zero", "test", indices=idx, per_example=True)
    _same(engine.scan(units, "zero", "test", indices=idx, per_example=True, screen=EVERYTHING_EXACT), exact)
    means = activation_means(model, shapes, units, device="cpu")
    exact = engine.scan(units, "mean-activation", "test", indices=idx, per_example=True, means=means)
    _same(engine.scan(units, "mean-activation", "test", indices=idx, per_example=True, screen=EVERYTHING_EXACT,
                      means=means), exact)


def test_estimate_is_the_first_order_change_through_residual_blocks(shapes):
    """A tiny weight perturbation of one unit: the screen's estimate matches the true change of the
    logit difference (the chain runs through BatchNorm, the residual addition and ReLU exactly)."""
    model = small_stem_resnet18(seed=0)
    model.double()  # float64, so that the check is not about float32 rounding
    engine = ScanEngine(model, shapes, device="cpu")
    x = shapes["test"].images[:4].double() / 255
    for layer, index in (("layer1.0.conv2", 3), ("layer3.1.conv1", 7), ("layer4.1.conv2", 11)):
        unit = Unit(layer, index)
        screen_pass = ScreenPass(engine.graph, {layer: (layer, True)})
        plan = screen_pass.plans[layer]
        assert plan is not None and plan.steps, layer
        batch = screen_pass.run(x)
        conv = dict(engine.model.named_modules())[layer]
        with torch.no_grad():
            direction = torch.randn_like(conv.weight[index]) * 1e-7
            edited = conv.weight[index] + direction
            slab = nn.functional.conv2d(batch.env[plan.layer_input], edited[None], None, conv.stride, conv.padding)
            estimate = batch.estimate(plan, slab, torch.tensor([index]), 1)[:, 0, 1]
            before = engine.model(x)
            conv.weight[index] += direction
            after = engine.model(x)
            conv.weight[index] -= direction
        true = (after[:, 1] - after[:, 0]) - (before[:, 1] - before[:, 0])
        assert true.abs().max() > 0
        np.testing.assert_allclose(estimate.numpy(), true.numpy(), rtol=0.02)
        assert unit.id == f"{layer}:{index}"


def test_audit_counts_exactly_the_flips_the_screen_misses(shapes, cnn):
    """Auditing every unit makes the whole scan exact; the audit's missed flips are then exactly the
    pairs where the unaudited screened scan (same calibration) disagrees with the exact scan."""
    units = enumerate_units(cnn)
    engine = ScanEngine(cnn, shapes, batch_size=64, device="cpu")
    exact = engine.scan(units, "zero", "train", per_example=True)
    loose = Screen(factor=1.0, calibration=0, audit_units=0)
    screened = engine.scan(units, "zero", "train", per_example=True, screen=loose)
    audited = engine.scan(units, "zero", "train", per_example=True,
                          screen=Screen(factor=1.0, calibration=0, audit_units=len(units)))
    _same(audited, exact)
    report = screened.screen
    wrong = int((screened.example_correct != exact.example_correct).sum())  # two classes: a flip is a change
    assert wrong > 0, "the loose screen on this narrow CNN should miss some flips"
    assert audited.screen.audit_missed == wrong
    assert audited.screen.audit_cleared == report.pairs - report.exact_pairs
    assert audited.screen.audit_flips == int((exact.example_correct != exact.base_example_correct[None, :]).sum())
    # cleared pairs are counted once: per unit, exactly the split's examples
    assert (screened.pred_count.sum(axis=(1, 2)) == len(shapes["train"])).all()
    # the calibration slack closes most of the gap the loose screen leaves
    calibrated = engine.scan(units, "zero", "train", per_example=True,
                             screen=Screen(factor=1.0, calibration=32, audit_units=0))
    assert int((calibrated.example_correct != exact.example_correct).sum()) < wrong
    assert calibrated.screen.exact_pairs > report.exact_pairs


def test_dead_channel_is_known_unchanged(shapes, cnn):
    """A channel that its ReLU keeps at zero before and after zeroing changes nothing: the screen
    knows it exactly and clears every pair of it, even with no slack allowance."""
    model = _trained_small_cnn(shapes)
    bn = model.stages[1].bn
    with torch.no_grad():
        bn.bias[2] = -1e4
    engine = ScanEngine(model, shapes, batch_size=64, device="cpu")
    unit = Unit("stages.1.conv", 2)
    res = engine.scan([unit], "zero", "test", screen=Screen(factor=4.0, calibration=8, audit_units=0))
    n = len(shapes["test"])
    assert res.screen.slack["stages.1.conv"] == 0.0
    assert res.screen.known_unchanged == n - 8
    assert res.screen.exact_pairs == 8
    assert (res.correct[0] == res.base_correct).all()
    with intervene(model, [unit], "zero") as edited, torch.no_grad():
        x = shapes["test"].images[:8].float()
        assert torch.equal(edited(x), model(x))


def test_unsupported_chain_falls_back_to_exact(shapes):
    class Broadcast(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.offset = nn.Parameter(torch.randn(4, 12, 12))  # broadcast over the batch
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x) + self.offset).mean((2, 3)))

    torch.manual_seed(0)
    model = Broadcast().eval()
    engine = ScanEngine(model, shapes, batch_size=32, device="cpu")
    units = [Unit("conv", i) for i in range(4)]
    exact = engine.scan(units, "zero", "test", per_example=True)
    screened = engine.scan(units, "zero", "test", per_example=True, screen=Screen(audit_units=0))
    assert screened.screen.unscreened_layers == ["conv"]
    assert screened.screen.exact_fraction == 1.0
    _same(screened, exact)


def test_screen_settings_are_checked():
    with pytest.raises(ValueError, match="factor must be >= 1"):
        Screen(factor=0.5)
    with pytest.raises(ValueError, match="calibration"):
        Screen(calibration=-1)
    d = ScreenReport(factor=4.0, pairs=10, exact_pairs=3, audit_cleared=100, audit_missed=0).to_dict()
    assert d["exact_fraction"] == pytest.approx(0.3)
    assert d["miss_rate_upper_95"] == pytest.approx(1 - 0.05 ** (1 / 100), rel=1e-6)  # (1 - p)^n = 5% at 0 misses
