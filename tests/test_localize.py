"""The localisation search on planted models whose truth is known by construction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from memorizer_models import MINORITY, _flat, planted_model
from spurmem.probes.localize import UNCONSTRAINED_CAVEAT, localize


@pytest.fixture(scope="module")
def planted(shapes):
    return planted_model(shapes)


def test_planted_model_is_what_it_claims(shapes, planted):
    from spurmem.metrics import evaluate

    model, chunks = planted
    res = evaluate(model, shapes, device="cpu")
    assert res["train"].group_accuracy(MINORITY) == 1.0          # memorised
    assert res["test"].group_accuracy(MINORITY) < 0.2             # the rule is spurious
    assert res["train"].group_accuracy(0) > 0.9 and res["train"].group_accuracy(3) > 0.9
    with torch.no_grad():
        h = torch.relu(model.memory(torch.relu(model.templates(_flat(shapes, "train")))))[:, 2:]
    fired = set(np.flatnonzero((h > 0).any(1).numpy()).tolist())
    assert fired == set(np.concatenate(chunks).tolist())


def test_search_finds_the_memorising_units_and_names_them(shapes, planted):
    model, chunks = planted
    result = localize(model, shapes, MINORITY, device="cpu", max_steps=6)
    s = result.search
    assert s.halved and s.units_needed is not None and s.units_needed <= len(chunks)
    assert all(u.startswith("memory:") and int(u.split(":")[1]) >= 2 for u in s.units)
    assert s.target_acc_end <= 0.5 * s.target_acc_start
    assert not result.control.halved  # random majority examples are not held by any unit
    assert result.verdict["label"] == "localised memorisation"
    # trajectory: all groups, all splits, every step, with margins
    t = s.trajectory
    assert set(t.split) == {"train", "val", "test"} and set(t.group) == {0, 1, 2, 3}
    assert sorted(set(t.step)) == list(range(len(s.units) + 1))
    assert t.mean_margin.notna().all()
    # the majority of the same class is spared at every step
    maj = t[(t.split == "train") & (t.group == result.majority)].accuracy
    assert maj.min() >= maj.iloc[0] - 0.05


def test_without_memorising_units_there_is_no_effect(shapes):
    model, _ = planted_model(shapes, memorise=False)
    result = localize(model, shapes, MINORITY, device="cpu", max_steps=3, control=False)
    assert not result.search.halved
    assert result.verdict["label"] in ("no effect", "inconclusive")


def test_unconstrained_variant_is_labelled(shapes, planted):
    model, _ = planted
    result = localize(model, shapes, MINORITY, device="cpu", max_steps=2, constrained=False, control=False)
    assert result.search.note == UNCONSTRAINED_CAVEAT
    assert not result.search.constrained
    assert "decision rule" in result.summary()["note"]


def test_constraint_blocks_units_that_break_the_majority(shapes):
    """Without memorisers the only unit that lowers the minority's training accuracy... is none: the
    colour units flip the majority too, so the constrained search must refuse them."""
    model, _ = planted_model(shapes, memorise=False)
    result = localize(model, shapes, 1, device="cpu", max_steps=3, control=False)
    assert all(row >= result.search.steps.iloc[0][c] - 0.05 - 1e-9
               for c in result.search.steps.columns if c.startswith("train acc of majority")
               for row in result.search.steps[c])
