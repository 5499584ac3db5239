import numpy as np
import pytest
import torch

from spurmem.data import DataError, GroupDataset, SplitData, group_index, load_dataset


def _split(y, a):
    n = len(y)
    return SplitData(torch.zeros(n, 1, 2, 2, dtype=torch.uint8), torch.tensor(y), torch.tensor(a),
                     [str(i) for i in range(n)], n_attrs=2)


def test_group_arithmetic():
    assert group_index(1, 0, 2) == 2
    assert group_index(1, 1, 3) == 4
    y, a = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])
    assert group_index(y, a, 2).tolist() == [0, 1, 2, 3]


def test_majority_minority_from_training_counts():
    train = _split([0] * 5 + [0] * 2 + [1] * 1 + [1] * 6, [0] * 5 + [1] * 2 + [0] * 1 + [1] * 6)
    ds = GroupDataset("t", {"train": train}, ["c0", "c1"], ["land", "water"], (0.0,), (1.0,))
    assert ds.train_group_counts.tolist() == [5, 2, 1, 6]
    assert ds.majority_groups == [0, 3]
    assert ds.minority_groups == [1, 2]
    assert ds.same_class_majority(2) == 3
    assert ds.group_names == ["c0/land", "c0/water", "c1/land", "c1/water"]


def test_label_out_of_range_and_empty_split_are_errors():
    with pytest.raises(DataError, match="label outside"):
        GroupDataset("t", {"train": _split([0, 2], [0, 1])}, ["c0", "c1"], ["p", "q"], (0.0,), (1.0,))
    with pytest.raises(DataError, match="'val' is empty"):
        GroupDataset("t", {"train": _split([0, 1], [0, 1]), "val": _split([], [])}, ["c0", "c1"], ["p", "q"],
                     (0.0,), (1.0,))


def test_generated_datasets_are_deterministic():
    a = load_dataset("synthetic-shapes", n_train=40, n_val=8, n_test=8, seed=3)
    b = load_dataset("synthetic-shapes", n_train=40, n_val=8, n_test=8, seed=3)
    c = load_dataset("synthetic-shapes", n_train=40, n_val=8, n_test=8, seed=4)
    assert torch.equal(a["train"].images, b["train"].images)
    assert not torch.equal(a["train"].images, c["train"].images)
    d1, d2 = load_dataset("colored-digits", seed=1), load_dataset("colored-digits", seed=1)
    assert torch.equal(d1["test"].images, d2["test"].images) and d1["train"].ids == d2["train"].ids


def test_colored_digits_correlation_near_rho():
    ds = load_dataset("colored-digits", rho=0.9, seed=0)
    tr = ds["train"]
    agree = (tr.y == tr.a).float().mean().item()
    assert abs(agree - 0.9) < 0.03
    te = ds["test"]
    assert abs((te.y == te.a).float().mean().item() - 0.5) < 0.08


def test_unknown_dataset_suggests_nearest():
    with pytest.raises(DataError, match="did you mean 'colored-digits'"):
        load_dataset("colored-digit")
