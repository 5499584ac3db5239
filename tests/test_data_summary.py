"""`spurmem data summary` and the group count table behind it."""

import json

import pytest

from spurmem.cli import main
from spurmem.data import DataError, load_dataset
from spurmem.data.commands import parse_params
from spurmem.data.summary import group_count_table


def test_group_count_table_is_tidy_and_consistent():
    ds = load_dataset("synthetic-shapes", n_train=100, n_val=40, n_test=40, rho=0.8, size=8)
    table = group_count_table(ds)
    assert len(table) == 3 * ds.n_groups
    train = table[table.split == "train"].set_index("group")
    assert train["count"].tolist() == ds.train_group_counts.tolist() == [40, 10, 10, 40]
    assert train["role"].tolist() == ["majority", "minority", "minority", "majority"]
    assert train.loc[2, "name"] == "cross/red" and train.loc[2, "y"] == 1 and train.loc[2, "a"] == 0
    for _, part in table.groupby("split"):
        assert part["fraction"].sum() == pytest.approx(1.0)


def test_roles_mark_groups_absent_from_train():
    ds = load_dataset("synthetic-shapes", n_train=40, n_val=20, n_test=20, rho=1.0, size=8)
    roles = group_count_table(ds).query("split == 'train'")["role"].tolist()
    assert roles == ["majority", "absent", "absent", "majority"]


def test_cli_summary_of_fashion_waterbirds(capsys):
    assert main(["data", "summary", "fashion-waterbirds", "n_train=1000", "n_val_per_group=10",
                 "n_test_per_group=10", "rho=0.9"]) == 0
    out = capsys.readouterr().out
    assert "source:  " in out and "textures scikit-image" in out
    assert ("debian:" in out) or ("bundled:" in out)
    assert "g1 pullover/water" in out and "minority" in out
    lines = [line.split() for line in out.splitlines() if line.strip().startswith("g")]
    train = lines[:4]
    assert [int(t[2]) for t in train] == [450, 50, 50, 450]
    assert [t[-1] for t in train] == ["majority", "minority", "minority", "majority"]
    assert "val: 40 examples" in out and "test: 40 examples" in out


def test_cli_summary_json(capsys):
    assert main(["data", "summary", "synthetic-shapes", "n_train=40", "n_val=20", "n_test=20", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["counts"]["train"] == [18, 2, 2, 18] and info["minority_groups"] == [1, 2]
    assert len(info["mean"]) == 3


def test_parse_params():
    assert parse_params(["rho=0.9", "variant=hard", "attr_names=[a, b]"]) == {
        "rho": 0.9, "variant": "hard", "attr_names": ["a", "b"]}
    with pytest.raises(DataError, match="'rho' should be KEY=VALUE"):
        parse_params(["rho"])


def test_cli_list_shows_every_dataset_and_its_defaults(capsys):
    from spurmem.data import DATASETS, dataset_parameters

    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in DATASETS:
        assert f"{name}: " in out
    assert "variant='default' rho=0.95 size=32 n_train=4800" in out
    assert dataset_parameters("celeba")["target"] == "Blond_Hair"
    with pytest.raises(DataError, match="unknown dataset 'celeb'"):
        dataset_parameters("celeb")
