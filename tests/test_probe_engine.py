"""The probe grid evaluated on the scan engine gives the rows of the copy-edit-predict reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from spurmem.probes import ProbeConfig, run_probe
from spurmem.probes.scan import ScanEngine
from spurmem.probes.units import Unit
from test_scan import _trained_small_cnn, naive_counts


def test_engine_rows_equal_copy_edit_predict_rows(shapes):
    model = _trained_small_cnn(shapes)
    torch.manual_seed(5)
    earlier = {k: v + 0.3 * torch.randn_like(v) if v.is_floating_point() else v
               for k, v in model.state_dict().items()}
    config = ProbeConfig(scorers=["group-contrast", "weight-norm", "weight-threshold"], k=[1, 4],
                         interventions=["zero", "mean-activation", "noise", "rewind"], sigmas=[0.5],
                         fractions=[0.05], groups=[1], repeats=2, device="cpu", batch_size=64)
    kwargs = dict(rewind_source=earlier, progress=False)
    fast = run_probe(model, shapes, config, **kwargs).rows
    reference = run_probe(model, shapes, config, use_engine=False, **kwargs).rows
    assert len(fast) == len(reference) and len(fast) > 100
    float_cols = [c for c in fast.columns if c.startswith("margin") or c == "specificity" or c == "drop"]
    exact_cols = [c for c in fast.columns if c not in float_cols and c != "seconds"]
    pd.testing.assert_frame_equal(fast[exact_cols], reference[exact_cols])
    np.testing.assert_allclose(fast[float_cols].to_numpy(float), reference[float_cols].to_numpy(float),
                               rtol=1e-4, atol=1e-4)
    assert (fast["acc_after"] != fast["acc_before"]).any()  # some edits change predictions


def test_sets_reuse_the_prefix_before_their_earliest_unit(shapes):
    model = _trained_small_cnn(shapes)
    engine = ScanEngine(model, shapes, batch_size=64, device="cpu", cache_mb=512)
    sets = [[Unit("stages.2.conv", 1), Unit("stages.3.conv", 0)], [Unit("stages.2.conv", 3)],
            [Unit("stages.3.conv", 2), Unit("stages.0.conv", 1)]]
    for intervention, params in [("zero", {}), ("reinit", {"sigma": 0.4, "seed": 1})]:
        res = engine.scan([], intervention, "val", sets=sets, baseline=False, **params)
        for i, (correct, margin, _) in enumerate(naive_counts(model, shapes, "val", sets, intervention, **params)):
            assert res.correct[i].tolist() == correct.tolist()
            np.testing.assert_allclose(res.margin_sum[i], margin, rtol=1e-4, atol=1e-3)
            assert res.pred_count[i].sum(axis=1).tolist() == res.count.tolist()
    entries = {key[2:4] for key in engine._prefix_cache}
    assert ("stages.2.conv", "before") in entries  # the first two sets share the prefix up to stage 2
    assert ("stages.0.conv", "before") in entries  # the third set enters at the (normalised) input
    assert not any(site.startswith("stages.3") for site, _ in entries)  # never downstream of a set's unit
