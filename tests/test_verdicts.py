import math

import numpy as np
import pytest

from probe_models import (
    boundary_dataset, boundary_model, class_decision_model, group_feature_model, memorising_model,
    one_group_memoriser, planted_dataset, redundant_model,
)
from spurmem.probes import probe
from spurmem.probes.verdicts import (
    BROAD_DISRUPTION, CLASS_COLLAPSE, GROUP_FEATURE, INCONCLUSIVE, LOCALISED, NO_EFFECT, NOT_SUPPORTED, NOT_TESTABLE,
    PREDICTION_SHIFT, SUPPORTED, WITHIN_CONTROL, GroupChange, Thresholds, classify, control_position,
    fit_precondition, prediction_shift, sensitivity_claim, specificity_claim, tolerance,
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
    assert v.label == PREDICTION_SHIFT and "rose" in v.reason
    assert classify(1.0, 0.5, 0.432, 0.45, 1.0, 0.996, beyond_control=True).label == LOCALISED


# the pretrained MobileNetV2 of issue 16: zeroing features.1.conv.0.0:8, g = pullover/water
MNV2_OTHERS = [GroupChange("pullover/land", 1.0, 0.997, 0.992, 0.996), GroupChange("coat/land", 1.0, 0.017, 0.468, 0.012),
               GroupChange("coat/water", 1.0, 0.578, 1.0, 0.572)]


def test_an_edit_that_wrecks_other_groups_is_broad_disruption_not_memorisation():
    v = classify(1.0, 0.542, 0.468, 0.56, 1.0, 0.997, others=MNV2_OTHERS, beyond_control=True)
    assert v.label == BROAD_DISRUPTION
    assert "coat/land train" in v.reason and "100.0% -> 1.7%" in v.reason  # the worst other group, named
    assert v.statistics["worst_other_drop"] == pytest.approx(0.983)
    # the same numbers without the other groups used to read as memorisation
    assert classify(1.0, 0.542, 0.468, 0.56, 1.0, 0.997, beyond_control=True).label == PREDICTION_SHIFT


def test_heldout_must_stay_within_tolerance_in_both_directions():
    t = Thresholds()
    # g's held-out rose 0.468 -> 0.56 (20% of itself): the boundary moved
    assert classify(1.0, 0.542, 0.468, 0.56, 1.0, 1.0, beyond_control=True).label == PREDICTION_SHIFT
    # g's train untouched but its held-out jumped to ~100% (group-contrast k=10 on the MobileNetV2)
    v = classify(1.0, 1.0, 0.468, 0.996, 1.0, 1.0, beyond_control=True)
    assert v.label == PREDICTION_SHIFT
    assert classify(1.0, 0.5, 0.5, 0.5 * (1 + t.collateral) - 0.001, 1.0, 1.0, beyond_control=True).label == LOCALISED
    assert classify(1.0, 0.5, 0.5, 0.5 * (1 - t.collateral) - 0.01, 1.0, 1.0,
                    beyond_control=True).label == INCONCLUSIVE
    # near zero accuracy one example is not a move: the tolerance has a floor of collateral_floor points
    assert tolerance(0.04) == t.collateral_floor and tolerance(0.5) == pytest.approx(0.05)
    assert classify(0.0, 0.0, 0.04, 0.06, 1.0, 1.0).label == NO_EFFECT
    assert classify(0.0, 0.0, 0.04, 0.10, 1.0, 1.0).label == PREDICTION_SHIFT


def test_histograms_moving_toward_one_class_are_a_prediction_shift():
    hist = {"g0": ([40, 0], [40, 0]), "g1": ([20, 20], [30, 10]), "g3": ([2, 38], [8, 32])}
    assert prediction_shift(hist, ["neg", "pos"]) == ("neg", ["g1", "g3"])
    assert prediction_shift({"g1": hist["g1"]}, ["neg", "pos"]) is None  # one group is not "several"
    assert prediction_shift(hist, ["neg", "pos"], Thresholds(shift_groups=3)) is None
    v = classify(1.0, 0.5, 0.5, 0.5, 1.0, 1.0, shift=("neg", ["g1", "g3"]), beyond_control=True)
    assert v.label == PREDICTION_SHIFT and "toward neg" in v.reason and v.statistics["shift_class"] == "neg"


def test_no_localised_memorisation_while_any_other_group_moved():
    t = Thresholds()
    rng = np.random.default_rng(0)
    localised = 0
    for _ in range(3000):
        acc = rng.choice([0.0, 0.3, 0.5, 0.9, 1.0], size=(4, 2))
        after = np.clip(acc + rng.choice([0.0, 0.0, -0.05, 0.05, -0.3, 0.2], size=(4, 2)), 0, 1)
        others = [GroupChange(f"h{i}", acc[i, 0], after[i, 0], acc[i, 1], after[i, 1]) for i in (1, 2, 3)]
        v = classify(acc[0, 0], after[0, 0] * rng.choice([0.3, 1.0]), acc[0, 1], after[0, 1], acc[1, 0], after[1, 0],
                     others=others, beyond_control=True)
        if v.label == LOCALISED:
            localised += 1
            for o in others:
                for b, a in ((o.train_before, o.train_after), (o.heldout_before, o.heldout_after)):
                    assert abs(a - b) <= tolerance(b, t) + 1e-9, (v.reason, o)
            assert abs(v.statistics["heldout_after"] - v.statistics["heldout_before"]) <= \
                tolerance(v.statistics["heldout_before"], t) + 1e-9
    assert localised > 10  # the property was exercised


def test_classify_each_outcome_at_its_threshold():
    # same-class majority lost a quarter of g's share (0.15 of 0.6): class collapse
    assert classify(1.0, 0.4, 0.5, 0.48, 1.0, 0.85, beyond_control=True).label == CLASS_COLLAPSE
    # it lost 14%: below the collapse ratio but beyond the 10% collateral tolerance
    assert classify(1.0, 0.4, 0.5, 0.48, 1.0, 0.86, beyond_control=True).label == BROAD_DISRUPTION
    assert classify(1.0, 0.4, 0.5, 0.48, 1.0, 0.91, beyond_control=True).label == LOCALISED
    # held-out lost the same share as train (or 0.9 of it): group feature
    assert classify(1.0, 0.5, 0.6, 0.3, 1.0, 1.0, beyond_control=True).label == GROUP_FEATURE
    assert classify(1.0, 0.5, 0.6, 0.32, 1.0, 1.0, beyond_control=True).label == GROUP_FEATURE
    # between 1/2 and 0.9 of the train share: inconclusive
    assert classify(1.0, 0.5, 0.6, 0.42, 1.0, 1.0, beyond_control=True).label == INCONCLUSIVE
    assert classify(1.0, 0.5, 0.6, 0.35, 1.0, 1.0, beyond_control=True).label == INCONCLUSIVE
    # small effects
    assert classify(1.0, 0.91, 0.5, 0.48, 1.0, 1.0, beyond_control=True).label == NO_EFFECT
    # a held-out fall with the training accuracy intact is not "no effect"
    v = classify(1.0, 0.91, 0.5, 0.2, 1.0, 1.0, beyond_control=True)
    assert v.label == INCONCLUSIVE and "held-out accuracy fell" in v.reason
    assert classify(1.0, 0.91, 0.5, 0.2, 1.0, 1.0, thresholds=Thresholds(min_effect=0.05),
                    beyond_control=True).label == GROUP_FEATURE


def test_classify_carries_margins_and_survives_zero_accuracy():
    v = classify(1.0, 0.2, 0.0, 0.0, 1.0, 1.0, beyond_control=True, margin_change=-1.5, majority_margin_change=0.1)
    assert v.label == LOCALISED and v.statistics["heldout_share"] == 0.0
    assert v.statistics["margin_change"] == -1.5 and v.statistics["majority_margin_change"] == 0.1


def test_control_position_is_an_exact_p_value_never_infinite():
    pos = control_position(0.5, [0.0, 0.1, 0.0, 0.1])
    assert pos.percentile == 100.0 and pos.p_value == pytest.approx(1 / 5)
    assert control_position(0.1, [0.0, 0.1, 0.0, 0.1]).percentile == pytest.approx(75.0)
    assert control_position(0.1, [0.0, 0.1, 0.0, 0.1]).p_value == pytest.approx(3 / 5)
    zero_spread = control_position(0.46, [0.0] * 5)  # the MobileNetV2's k=1 control: 5 identical draws
    assert math.isfinite(zero_spread.p_value) and zero_spread.p_value == pytest.approx(1 / 6)
    assert zero_spread.beyond() is None  # 5 draws cannot reach p <= 0.1: no verdict either way
    assert control_position(0.46, [0.0] * 9).beyond() is True and Thresholds().min_control_draws == 9
    assert control_position(0.0, [0.0] * 9).beyond() is False
    assert control_position(0.2, []) is None


def test_claims_from_constructed_statistics():
    strong = {"setting": "s", "group": 1, "k": 3, "drop": 0.5, "specificity": 0.45, "drop_p": 1 / 11,
              "specificity_p": 1 / 11, "control_n": 10, "verdict": LOCALISED}
    weak = dict(strong, setting="w", specificity_p=0.6)
    assert sensitivity_claim([strong, weak]).status == SUPPORTED
    assert "1 of 2" in sensitivity_claim([strong, weak]).statistic
    assert sensitivity_claim([weak]).status == NOT_SUPPORTED
    assert sensitivity_claim([dict(strong, k=20)]).status == NOT_TESTABLE  # k beyond claim_max_k
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


def test_planted_core_feature_unit_is_broad_disruption():
    # the core feature both minority groups need: each group sees the other one fall with it
    _, v = _verdicts(group_feature_model(), planted_dataset(), "mean-activation")
    for g in (1, 2):
        row = v[("weight-norm k=1 mean-activation", g)]
        assert row.verdict == BROAD_DISRUPTION and row.worst_other_drop == pytest.approx(1.0)
        assert row.train_share == pytest.approx(1.0) and row.heldout_share == pytest.approx(1.0)
        assert row.majority_share == 0 and row.margin_change < 0


def test_model_without_critical_units_shows_no_effect():
    result, v = _verdicts(redundant_model(), planted_dataset(), "zero", k=(1, 3))
    assert {row.verdict for row in v.values()} == {NO_EFFECT}
    assert not result.summary.claims[0].supported


def test_a_unit_that_drops_only_gs_training_examples_is_localised_memorisation():
    result, v = _verdicts(one_group_memoriser(), planted_dataset(visible=0.5, memorise=True), "zero", k=(1,))
    row = v[("weight-norm k=1 zero", 2)]
    assert row.verdict == LOCALISED, row.reason
    assert row.train_share > 0.3 and row.heldout_share == 0 and row.majority_share == 0
    assert row.drop_p == pytest.approx(1 / 11) and row.control_n == 10
    assert v[("weight-norm k=1 zero", 1)].verdict == NO_EFFECT
    claim = result.summary.claims[0]
    assert claim.status == SUPPORTED and "strongest: weight-norm k=1 zero group 2" in claim.statistic


def test_removing_both_groups_memorisers_is_not_localised_for_either():
    # k=2 zeroes both minority groups' memorising units: each group sees the other one move
    _, v = _verdicts(memorising_model(), planted_dataset(visible=0.5, memorise=True), "zero", k=(2,))
    assert {v[("weight-norm k=2 zero", g)].verdict for g in (1, 2)} == {BROAD_DISRUPTION}


def test_a_unit_that_moves_the_class_boundary_is_never_localised_memorisation():
    result, v = _verdicts(boundary_model(), boundary_dataset(), "zero")
    row = v[("weight-norm k=1 zero", 1)]
    assert (row.train_before, row.train_after) == (1.0, 0.55)  # g1's memorised train examples fell
    assert row.heldout_after > row.heldout_before  # while its held-out accuracy rose
    assert row.verdict in (BROAD_DISRUPTION, PREDICTION_SHIFT) and row.verdict != LOCALISED
    if row.verdict == BROAD_DISRUPTION:
        assert row.worst_other == "pos/a0 (held-out)" and row.worst_other_drop == pytest.approx(0.5)
    assert not result.summary.claims[0].supported
    # summary.md lists every outcome with its count, the new ones included
    from spurmem.probes.summary import markdown

    text = markdown(result.summary, result.config)
    assert f"{row.verdict}: 2" in text and "localised memorisation: 0" in text and "z " not in text


def test_claims_are_not_testable_without_memorisation_to_find():
    assert fit_precondition({"g1": (0.125, 0.0)}) is not None  # the demo model never fitted its minority
    assert fit_precondition({"g1": (1.0, 0.468), "g2": (0.125, 0.0)}) is None
    assert fit_precondition({"g1": (0.95, 0.93)}) is not None  # no gap: nothing memorised
    result, _ = _verdicts(one_group_memoriser(), planted_dataset(visible=0.5), "zero")  # nothing memorised
    assert [c.status for c in result.summary.claims] == [NOT_TESTABLE, NOT_TESTABLE]
    assert "no memorisation to find" in result.summary.claims[0].statistic


def test_a_group_feature_is_never_support_for_memorisation():
    row = {"setting": "s", "group": 1, "k": 3, "drop": 0.5, "specificity": 0.45, "drop_p": 1 / 11,
           "specificity_p": 1 / 11, "control_n": 10}
    for label in (GROUP_FEATURE, PREDICTION_SHIFT, BROAD_DISRUPTION, INCONCLUSIVE):
        c = sensitivity_claim([dict(row, verdict=label)])
        assert c.status == NOT_SUPPORTED and "strongest" not in c.statistic and "closest" in c.statistic


def test_a_control_with_too_few_draws_makes_the_claim_not_testable():
    row = {"setting": "s", "group": 1, "k": 1, "drop": 0.46, "specificity": 0.45, "drop_p": 1 / 6,
           "specificity_p": 1 / 6, "control_n": 5, "verdict": LOCALISED}
    c = sensitivity_claim([row])
    assert c.status == NOT_TESTABLE and "5 draw(s)" in c.statistic and "inf" not in c.statistic
    result = probe(one_group_memoriser(), planted_dataset(visible=0.5, memorise=True), scorer="weight-norm", k=[1],
                   intervention="zero", repeats=5)
    row = result.summary.verdicts.set_index("group").loc[2]
    assert row.verdict == INCONCLUSIVE and "5 draw(s)" in row.reason


def test_the_unit_scan_and_the_search_label_units_by_the_same_rule():
    from spurmem.memorization.units import unit_memorization
    from spurmem.probes.localize import localize

    mem = unit_memorization(boundary_model(), boundary_dataset(), null_draws=10, device="cpu")
    row = mem.ranked.set_index("unit").loc["hidden:0"]
    assert row.verdict_group == 1 and row.verdict in (BROAD_DISRUPTION, PREDICTION_SHIFT)
    assert mem.ranked.set_index("unit").loc["hidden:3", "verdict"] == LOCALISED  # g2's memoriser moves nothing else
    found = localize(boundary_model(), boundary_dataset(), 1, intervention="zero", max_steps=1, device="cpu")
    assert found.search.units == ["hidden:0"]
    assert found.verdict["label"] in (BROAD_DISRUPTION, PREDICTION_SHIFT), found.verdict["reason"]


def test_the_unit_scan_says_not_testable_when_nothing_was_memorised():
    from spurmem.memorization.units import unit_memorization

    mem = unit_memorization(one_group_memoriser(), planted_dataset(visible=0.5), null_draws=10, device="cpu")
    assert mem.summary["statement"].startswith("not testable") and "no memorisation to find" in mem.summary["statement"]
    mem = unit_memorization(one_group_memoriser(), planted_dataset(visible=0.5, memorise=True), null_draws=10,
                            device="cpu")
    assert mem.summary["precondition"] is None and not mem.summary["statement"].startswith("not testable")
