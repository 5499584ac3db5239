"""Group-aware metrics against hand-computed cases."""

import math

import numpy as np
import pytest
import torch

from spurmem.data import GroupDataset, SplitData
from spurmem.metrics import (
    Predictions, averages_table, memorization_gap, memorization_gap_table, metrics_table, split_metrics, summarize,
)


def _split(groups: list[int], n_attrs: int = 2) -> SplitData:
    g = np.asarray(groups)
    y, a = g // n_attrs, g % n_attrs
    n = len(g)
    return SplitData(images=torch.zeros(n, 1, 2, 2, dtype=torch.uint8), y=torch.from_numpy(y), a=torch.from_numpy(a),
                     ids=[f"e{i}" for i in range(n)], n_attrs=n_attrs)


@pytest.fixture()
def dataset() -> GroupDataset:
    # training counts 6 / 2 / 1 / 3 (proportions 6/12, 2/12, 1/12, 3/12); test is group-balanced, 4 per group
    train = _split([0] * 6 + [1] * 2 + [2] * 1 + [3] * 3)
    test = _split([0] * 4 + [1] * 4 + [2] * 4 + [3] * 4)
    return GroupDataset(name="toy", splits={"train": train, "test": test}, class_names=["c0", "c1"],
                        attr_names=["a0", "a1"], mean=(0.0,), std=(1.0,))


def test_group_balanced_test_split_averages(dataset):
    group = dataset["test"].group.numpy()
    y = dataset["test"].y.numpy()
    # correct per group: 4/4, 2/4, 1/4, 3/4
    correct = np.array([1, 1, 1, 1] + [1, 1, 0, 0] + [1, 0, 0, 0] + [1, 1, 1, 0], dtype=bool)
    m = split_metrics(correct, group, y, dataset, "test")
    assert [g.accuracy for g in m.groups] == [1.0, 0.5, 0.25, 0.75]
    assert [g.count for g in m.groups] == [4, 4, 4, 4]
    assert m.average == pytest.approx(10 / 16)
    # adjusted average weights group accuracies by the TRAINING proportions 6:2:1:3
    assert m.adjusted_average == pytest.approx((6 * 1.0 + 2 * 0.5 + 1 * 0.25 + 3 * 0.75) / 12)
    assert m.balanced_accuracy == pytest.approx((1.0 + 0.5 + 0.25 + 0.75) / 4)
    assert m.worst_group_accuracy == 0.25 and m.worst_group == 2
    assert m.class_accuracy == pytest.approx([6 / 8, 4 / 8])
    assert m.worst_class_accuracy == pytest.approx(0.5)


def test_unbalanced_split_and_absent_group(dataset):
    # groups 0, 0, 0, 1, 3 (group 2 absent): absent groups are left out of WGA and of the adjusted average
    split = _split([0, 0, 0, 1, 3])
    correct = np.array([1, 1, 0, 0, 1], dtype=bool)
    m = split_metrics(correct, split.group.numpy(), split.y.numpy(), dataset, "val")
    assert m.groups[2].count == 0 and math.isnan(m.groups[2].accuracy)
    assert m.average == pytest.approx(3 / 5)
    assert m.balanced_accuracy == pytest.approx((2 / 3 + 0 + 1) / 3)
    assert m.adjusted_average == pytest.approx((6 * 2 / 3 + 2 * 0 + 3 * 1) / 11)
    assert m.worst_group_accuracy == 0.0 and m.worst_group == 1
    assert m.worst_class_accuracy == pytest.approx(2 / 4)


def test_margins_and_per_example_predictions():
    logits = np.array([[2.0, 0.0], [0.5, 1.5], [1.0, 1.0 + 1e-6]], dtype=np.float32)
    pred = Predictions(split="test", ids=["a", "b", "c"], y=np.array([0, 0, 1]), a=np.array([0, 1, 0]),
                       group=np.array([0, 1, 2]), logits=logits)
    assert pred.pred.tolist() == [0, 1, 1]
    assert pred.correct.tolist() == [True, False, True]
    assert pred.margin == pytest.approx([2.0, -1.0, 1e-6], abs=1e-6)
    p0 = math.exp(2) / (math.exp(2) + 1)
    assert pred.p_true[0] == pytest.approx(p0, rel=1e-6)
    assert pred.loss[0] == pytest.approx(-math.log(p0), rel=1e-5)
    table = pred.table()
    assert list(table.columns) == ["split", "id", "y", "a", "group", "pred", "p_true", "loss", "margin"]
    assert table["id"].tolist() == ["a", "b", "c"]


def test_mean_margin_per_group(dataset):
    split = _split([0, 0, 1, 3])
    m = split_metrics(np.array([1, 1, 0, 1], bool), split.group.numpy(), split.y.numpy(), dataset, "val",
                      margin=np.array([1.0, 3.0, -0.5, 2.0]))
    assert m.groups[0].mean_margin == pytest.approx(2.0)
    assert m.groups[1].mean_margin == pytest.approx(-0.5)
    assert math.isnan(m.groups[2].mean_margin)


def test_memorization_gap_and_tables(dataset):
    tr = dataset["train"]
    train_m = split_metrics(np.ones(len(tr), bool), tr.group.numpy(), tr.y.numpy(), dataset, "train")
    te = dataset["test"]
    correct = np.array([1, 1, 1, 1] + [1, 1, 0, 0] + [1, 0, 0, 0] + [1, 1, 1, 0], dtype=bool)
    test_m = split_metrics(correct, te.group.numpy(), te.y.numpy(), dataset, "test")
    assert memorization_gap(train_m, test_m) == pytest.approx([0.0, 0.5, 0.75, 0.25])
    gaps = memorization_gap_table(train_m, test_m, dataset)
    # majority groups from training counts: class 0 -> g0 (6 > 2), class 1 -> g3 (3 > 1)
    assert gaps["role"].tolist() == ["majority", "minority", "minority", "majority"]
    assert gaps["gap"].tolist() == pytest.approx([0.0, 0.5, 0.75, 0.25])
    tidy = metrics_table({"train": train_m, "test": test_m})
    assert len(tidy) == 8 and set(tidy["split"]) == {"train", "test"}
    flat = summarize({"test": test_m})
    assert flat["test/worst_group_accuracy"] == 0.25 and flat["test/acc_g1"] == 0.5
    avgs = averages_table({"test": test_m}).set_index("average")["value"]
    assert avgs["adjusted_average"] == pytest.approx(9.5 / 12)
