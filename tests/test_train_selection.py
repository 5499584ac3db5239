"""Model selection over crafted metrics histories."""

import math

import pytest

from spurmem.train import select_epoch


def row(epoch, wga, worst_class, avg):
    return {"epoch": epoch, "val/worst_group_accuracy": wga, "val/worst_class_accuracy": worst_class,
            "val/average": avg, "test/worst_group_accuracy": 1.0 - wga}


HISTORY = [
    row(0, 0.90, 0.10, 0.50),  # the initialisation never wins while trained epochs exist
    row(1, 0.20, 0.60, 0.70),
    row(2, 0.45, 0.55, 0.80),
    row(3, 0.30, 0.75, 0.95),
    row(4, 0.45, 0.70, 0.90),  # ties epoch 2 on WGA: the earlier epoch is chosen
    row(5, 0.40, 0.65, 0.93),
]


@pytest.mark.parametrize("rule, epoch, value", [
    ("val_wga", 2, 0.45),
    ("val_worst_class", 3, 0.75),
    ("val_average", 3, 0.95),
    ("last", 5, None),
])
def test_rules_pick_the_right_epoch(rule, epoch, value):
    sel = select_epoch(HISTORY, rule)
    assert (sel.rule, sel.epoch, sel.value) == (rule, epoch, value)


def test_metric_is_named_and_test_metrics_are_never_used():
    sel = select_epoch(HISTORY, "val_wga")
    assert sel.metric == "val/worst_group_accuracy"
    assert sel.to_dict() == {"rule": "val_wga", "epoch": 2, "metric": "val/worst_group_accuracy", "value": 0.45}


def test_unevaluated_or_nan_epochs_are_skipped_and_order_does_not_matter():
    history = [row(3, math.nan, 0.5, 0.5), {"epoch": 2, "train_loss": 0.1}, row(1, 0.3, 0.5, 0.5), row(4, 0.2, 0.5, 0.5)]
    assert select_epoch(history, "val_wga").epoch == 1
    assert select_epoch(list(reversed(history)), "val_wga").epoch == 1
    assert select_epoch(history, "last").epoch == 4


def test_only_initialisation_and_errors():
    assert select_epoch([row(0, 0.5, 0.5, 0.5)], "val_wga").epoch == 0
    with pytest.raises(ValueError, match="empty"):
        select_epoch([], "val_wga")
    with pytest.raises(ValueError, match="unknown selection rule"):
        select_epoch(HISTORY, "test_wga")
    with pytest.raises(ValueError, match="eval_splits must include 'val'"):
        select_epoch([{"epoch": 1, "train/average": 1.0}], "val_wga")
