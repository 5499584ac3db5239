import math

import numpy as np
import pytest

from probe_models import (
    class_decision_model, group_feature_model, memorising_model, planted_dataset, redundant_model,
)
from spurmem.probes import probe
from spurmem.probes.verdicts import (
    CLASS_COLLAPSE, GROUP_FEATURE, INCONCLUSIVE, LOCALISED, NO_EFFECT, WITHIN_CONTROL, Thresholds, classify,
    control_position,
    sensitivity_claim, specificity_claim,
)


# -- the pure classifier ---------------------------------------------------------------------------

def test_classify_localised_memorisation_on_a_constructed_case():
    v = classify(1.0, 0.4, 0.5, 0.48, 1.0, 0.99, beyond_control=True)
    assert v.label == LOCALISED
    assert v.statistics["train_share"] == pytest.approx(0.6) and v.statistics["heldout_share"] == pytest.approx(0.04)
    assert v.statistics["specificity"] == pytest.approx(0.59)


def test_classify_needs_the_random_control():
    assert classify(1.0, 0.4, 0.5, 0.48, 1.0, 0.99, beyond_control=False).label == WITHIN_CONTROL
    assert classify(1.0, 0.4, 0.5, 0.48, 1.0, 0.99, beyond_control=None).label == INCONCLUSIVE
    # collapse and feature are named without a control, but not when random units do as much
    assert classify(1.0, 0.0, 0.5, 0.0, 1.0, 0.0, beyond_control=None).label == CLASS_COLLAPSE
    assert classify(1.0, 0.0, 0.5, 0.0, 1.0, 0.0, beyond_control=False).label == WITHIN_CONTROL


def test_a_heldout_gain_is_not_memorisation():
    # train falls 19%, held-out rises from 0.43 to 0.69: predictions shifted towards g's class
    v = classify(1.0, 0.81, 0.432, 0.692, 1.0, 0.996, beyond_control=True)
    assert v.label == INCONCLUSIVE and "rose" in v.reason
    assert classify(1.0, 0.5, 0.432, 0.45, 1.0, 0.996, beyond_control=True).label == LOCALISED


def test_classify_each_outcome_at_its_threshold():
    # same-class majority lost a quarter of g's share (0.15 of 0.6): class collapse
    assert classify(1.0, 0.4, 0.5, 0.48, 1.0, 0.85, beyond_control=True).label == CLASS_COLLAPSE
    assert classify(1.0, 0.4, 0.5, 0.48, 1.0, 0.86, beyond_control=True).label == LOCALISED
    # held-out lost the same share as train (or 0.9 of it): group feature
    assert classify(1.0, 0.5, 0.6, 0.3, 1.0, 1.0, beyond_control=True).label == GROUP_FEATURE
    assert classify(1.0, 0.5, 0.6, 0.32, 1.0, 1.0, beyond_control=True).label == GROUP_FEATURE
    # between 1/2 and 0.9 of the train share: inconclusive
    assert classify(1.0, 0.5, 0.6, 0.42, 1.0, 1.0, beyond_control=True).label == INCONCLUSIVE
    assert classify(1.0, 0.5, 0.6, 0.35, 1.0, 1.0, beyond_control=True).label == INCONCLUSIVE
    # small effects
    assert classify(1.0, 0.91, 0.5, 0.2, 1.0, 1.0, beyond_control=True).label == NO_EFFECT
    assert classify(1.0, 0.91, 0.5, 0.2, 1.0, 1.0, thresholds=Thresholds(min_effect=0.05),
                    beyond_control=True).label == GROUP_FEATURE


def test_classify_carries_margins_and_survives_zero_accuracy():
    v = classify(1.0, 0.2, 0.0, 0.0, 1.0, 1.0, beyond_control=True, margin_change=-1.5, majority_margin_change=0.1)
    assert v.label == LOCALISED and v.statistics["heldout_share"] == 0.0
    assert v.statistics["margin_change"] == -1.5 and v.statistics["majority_margin_change"] == 0.1


def test_control_position():
    pos = control_position(0.5, [0.0, 0.1, 0.0, 0.1])
    assert pos.percentile == 100.0 and pos.z == pytest.approx((0.5 - 0.05) / np.std([0, 0.1, 0, 0.1], ddof=1))
    assert control_position(0.1, [0.0, 0.1, 0.0, 0.1]).percentile == pytest.approx(75.0)
    assert control_position(0.0, [0.0, 0.0]).z == 0.0 and math.isinf(control_position(0.2, [0.0, 0.0]).z)
    assert control_position(0.2, []) is None


def test_claims_from_constructed_statistics():
    strong = {"setting": "s", "group": 1, "k": 3, "drop": 0.5, "specificity": 0.45, "drop_z": 5.0,
              "drop_percentile": 100.0, "specificity_z": 4.0, "specificity_percentile": 100.0}
    weak = dict(strong, specificity_z=1.0, specificity_percentile=60.0)
    assert sensitivity_claim([strong, weak]).supported
    assert "1 of 2" in sensitivity_claim([strong, weak]).statistic
    assert not sensitivity_claim([weak]).supported
    assert not sensitivity_claim([dict(strong, k=20)]).supported  # k beyond claim_max_k
    assert not sensitivity_claim([dict(strong, verdict=CLASS_COLLAPSE)]).supported  # the class fell with it
    diag = np.array([[0.1, 0, 0, 0], [0, 0.6, 0.1, 0], [0, 0.1, 0.5, 0.0], [0, 0, 0, 0.1]])
    assert specificity_claim({"k=1": diag}, [1, 2]).supported
    flat = np.full((4, 4), 0.3)
    assert not specificity_claim({"k=1": diag, "k=3": flat, "k=10": flat}, [1, 2]).supported


# -- planted models through the probe runner -------------------------------------------------------

def _verdicts(model, dataset, intervention, k=(1,)):
    result = probe(model, dataset, scorer="weight-norm", k=list(k), intervention=intervention, repeats=10)
    v = result.summary.verdicts
    return result, {(row.setting, row.group): row for row in v.itertuples()}


def test_planted_class_decision_unit_is_class_collapse():
    result, v = _verdicts(class_decision_model(), planted_dataset(), "zero")
    row = v[("weight-norm k=1 zero", 2)]  # class 1's minority; its majority (g3) falls with it
    assert row.verdict == CLASS_COLLAPSE and row.majority_share == pytest.approx(1.0)
    assert v[("weight-norm k=1 zero", 1)].verdict == NO_EFFECT  # class 0 is untouched
    hist = result.rows.query("setting == 'weight-norm k=1 zero' and split == 'train' and group == 3")
    assert int(hist["pred_after_0"].iloc[0]) == 90 and int(hist["pred_after_1"].iloc[0]) == 0


def test_planted_core_feature_unit_is_group_feature():
    _, v = _verdicts(group_feature_model(), planted_dataset(), "mean-activation")
    for g in (1, 2):
        row = v[("weight-norm k=1 mean-activation", g)]
        assert row.verdict == GROUP_FEATURE
        assert row.train_share == pytest.approx(1.0) and row.heldout_share == pytest.approx(1.0)
        assert row.majority_share == 0 and row.margin_change < 0


def test_model_without_critical_units_shows_no_effect():
    result, v = _verdicts(redundant_model(), planted_dataset(), "zero", k=(1, 3))
    assert {row.verdict for row in v.values()} == {NO_EFFECT}
    assert not result.summary.claims[0].supported


def test_planted_memorising_units_are_localised_memorisation():
    result, v = _verdicts(memorising_model(), planted_dataset(visible=0.5, memorise=True), "zero", k=(2,))
    for g in (1, 2):
        row = v[("weight-norm k=2 zero", g)]
        assert row.verdict == LOCALISED, row.reason
        assert row.train_share > 0.3 and row.heldout_share == 0 and row.majority_share == 0
        assert row.drop_z >= 2
    assert result.summary.claims[0].supported  # SPEC 5.1 on this model
