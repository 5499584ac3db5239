"""The scan engine against the naive reference: copy the model, edit one unit, re-run the split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from spurmem.metrics import predict
from spurmem.models import MLP, SmallCNN
from spurmem.probes.interventions import activation_means, intervene
from spurmem.probes.scan import ScanEngine, scan_units
from spurmem.probes.units import Unit, enumerate_units
from probe_models import small_stem_resnet18


def naive_counts(model, dataset, split, variants, intervention, base=(), **params):
    """Per variant (a list of units), per group: correct count, margin sum and per-example correctness."""
    out = []
    for units in variants:
        with intervene(model, list(base) + list(units), intervention, **params) as edited:
            p = predict(edited, dataset, split, device="cpu")
        correct = np.bincount(p.group, weights=p.correct, minlength=dataset.n_groups).astype(int)
        margin = np.bincount(p.group, weights=p.margin, minlength=dataset.n_groups)
        out.append((correct, margin, p.correct))
    return out


def assert_agree(result, reference):
    for i, (correct, margin, per_example) in enumerate(reference):
        assert result.correct[i].tolist() == correct.tolist(), result.labels[i]
        np.testing.assert_allclose(result.margin_sum[i], margin, rtol=1e-4, atol=1e-3)
        if result.example_correct is not None:
            assert (result.example_correct[i] == per_example).all()


def _trained_small_cnn(dataset, widths=(4, 8, 8, 8), steps=60):
    """A briefly trained CNN, so that edits move predictions (an untrained one predicts one class)."""
    torch.manual_seed(0)
    model = SmallCNN(dataset.n_classes, widths=widths)
    from spurmem.data import iterate_batches

    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    batches = list(iterate_batches(dataset["train"], 50, dataset.mean, dataset.std))
    for step in range(steps):
        b = batches[step % len(batches)]
        opt.zero_grad()
        nn.functional.cross_entropy(model(b.x), b.y).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def cnn(shapes):
    return _trained_small_cnn(shapes)


@pytest.mark.parametrize("intervention,params", [
    ("zero", {}),
    ("reinit", {"sigma": 0.3, "seed": 4}),
    ("noise", {"sigma": 0.5, "seed": 1}),
    ("zero-activation", {}),
])
def test_small_cnn_every_unit_agrees_with_naive(shapes, cnn, intervention, params):
    units = enumerate_units(cnn)
    result = scan_units(cnn, shapes, units, intervention, "val", device="cpu", batch_size=32, per_example=True,
                        **params)
    assert result.engine == "fx"
    assert_agree(result, naive_counts(cnn, shapes, "val", [[u] for u in units], intervention, **params))
    # the scan must see effects: some unit changes some group's count
    assert (result.correct != result.base_correct[None, :]).any()


def test_mean_activation_and_rewind_agree(shapes, cnn):
    units = enumerate_units(cnn)
    means = activation_means(cnn, shapes, units, device="cpu")
    engine = ScanEngine(cnn, shapes, batch_size=64, device="cpu")
    res = engine.scan(units, "mean-activation", "train", means=means)
    assert_agree(res, naive_counts(cnn, shapes, "train", [[u] for u in units], "mean-activation", means=means))
    source = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in cnn.state_dict().items()}
    res = engine.scan(units[:20], "rewind", "test", source=source)
    assert_agree(res, naive_counts(cnn, shapes, "test", [[u] for u in units[:20]], "rewind", source=source))


def test_sets_and_base_units_agree(shapes, cnn):
    units = enumerate_units(cnn)
    engine = ScanEngine(cnn, shapes, batch_size=50, device="cpu")
    sets = [[units[0], units[10]], [units[5], units[20], units[-1]]]
    res = engine.scan([], "zero", "val", sets=sets)
    assert res.labels == ["stages.0.conv:0+stages.1.conv:6", "stages.1.conv:1+stages.3.conv:0+stages.3.conv:7"]
    assert_agree(res, naive_counts(cnn, shapes, "val", sets, "zero"))
    base = [units[3], units[14]]
    res = engine.scan(units[4:12], "zero-activation", "val", base_units=base)
    ref = naive_counts(cnn, shapes, "val", [[u] for u in units[4:12]], "zero-activation", base=base)
    assert_agree(res, ref)
    base_ref = naive_counts(cnn, shapes, "val", [[]], "zero-activation", base=base)[0]
    assert res.base_correct.tolist() == base_ref[0].tolist()


def test_indices_restrict_the_examples(shapes, cnn):
    idx = np.flatnonzero(shapes["train"].group.numpy() == 1)
    units = enumerate_units(cnn)[:12]
    res = scan_units(cnn, shapes, units, "zero", "train", indices=idx, device="cpu")
    assert res.count.tolist() == [0, len(idx), 0, 0]
    full = scan_units(cnn, shapes, units, "zero", "train", device="cpu")
    assert res.correct[:, 1].tolist() == full.correct[:, 1].tolist()


def test_hook_fallback_gives_the_same_result(shapes, cnn):
    units = enumerate_units(cnn)[::3]
    engine = ScanEngine(cnn, shapes, batch_size=40, device="cpu")
    fx_result = engine.scan(units, "reinit", "val", sigma=0.2, seed=2)
    engine.graph = None
    engine._sites.clear()
    hook_result = engine.scan(units, "reinit", "val", sigma=0.2, seed=2)
    assert hook_result.engine == "hook"
    assert hook_result.correct.tolist() == fx_result.correct.tolist()
    np.testing.assert_allclose(hook_result.loss_sum, fx_result.loss_sum, rtol=1e-4)


def test_resnet18_residual_blocks_agree(shapes):
    model = small_stem_resnet18(seed=1)
    rng = np.random.default_rng(0)
    units = [Unit(layer, int(rng.integers(n))) for layer, n in [
        ("conv1", 64), ("layer1.0.conv1", 64), ("layer1.1.conv2", 64), ("layer2.0.conv1", 128),
        ("layer2.0.downsample.0", 128), ("layer3.1.conv2", 256), ("layer4.0.conv2", 512), ("layer4.1.conv2", 512)]]
    idx = np.arange(24)
    for intervention in ("zero", "zero-activation"):
        res = scan_units(model, shapes, units, intervention, "test", indices=idx, device="cpu", batch_size=12)
        assert res.engine == "fx"
        sub = _subset(shapes, "test", idx)
        assert_agree(res, naive_counts(model, sub, "test", [[u] for u in units], intervention))
    assert (res.margin_sum != res.base_margin_sum[None, :]).any()


def test_linear_units_and_callers_model_untouched(shapes):
    torch.manual_seed(0)
    model = MLP(2, 3, 12, hidden=(16, 8)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    units = enumerate_units(model)
    res = scan_units(model, shapes, units, "noise", "val", sigma=1.0, seed=0, device="cpu", batch_size=30)
    assert_agree(res, naive_counts(model, shapes, "val", [[u] for u in units], "noise", sigma=1.0, seed=0))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(not any(m._forward_hooks) for m in model.modules())


def test_table_is_tidy(shapes, cnn):
    res = scan_units(cnn, shapes, enumerate_units(cnn)[:5], "zero", "val", device="cpu")
    table = res.table()
    assert len(table) == 5 * shapes.n_groups
    row = table.iloc[0]
    assert row.delta == pytest.approx(row.acc_before - row.acc_after)
    assert set(table.columns) >= {"unit", "layer", "split", "group", "correct", "count", "margin_after"}


def _subset(dataset, split, idx):
    from spurmem.data.schema import GroupDataset

    splits = dict(dataset.splits)
    splits[split] = dataset[split].subset(idx)
    return GroupDataset(dataset.name, splits, dataset.class_names, dataset.attr_names, dataset.mean, dataset.std)


def test_channel_chain_is_used_and_changes_nothing(shapes, cnn):
    units = enumerate_units(cnn)
    fast = ScanEngine(cnn, shapes, batch_size=64, device="cpu")
    plain = ScanEngine(cnn, shapes, batch_size=64, device="cpu", channel_chain=False)
    for intervention in ("zero", "zero-activation"):
        a = fast.scan(units, intervention, "train")
        b = plain.scan(units, intervention, "train")
        assert a.correct.tolist() == b.correct.tolist()
        np.testing.assert_allclose(a.loss_sum, b.loss_sum, rtol=1e-4)
    # stages 0-2 feed the next conv through BN/ReLU/pool, stage 3 the head through the global pool
    assert isinstance(fast.site("stages.0.conv", "stages.0.conv").terminal, nn.Conv2d)
    assert isinstance(fast.site("stages.2.bn", None).terminal, nn.Conv2d)
    assert isinstance(fast.site("stages.3.conv", "stages.3.conv").terminal, nn.Linear)
    assert plain.site("stages.0.conv", "stages.0.conv").terminal is None
