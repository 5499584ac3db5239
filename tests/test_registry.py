import pytest

from spurmem.data import DataError, build_augment
from spurmem.probes.scorers import get_scorer
from spurmem.registry import lookup


def test_lookup_returns_the_entry_and_names_the_nearest_on_a_miss():
    reg = {"weight-norm": 1, "group-gradient": 2}
    assert lookup(reg, "group-gradient", "scorer") == 2
    with pytest.raises(KeyError, match=r"unknown scorer 'weight_norm' \(did you mean 'weight-norm'\?\)\. Known: weight-norm, group-gradient"):
        lookup(reg, "weight_norm", "scorer")
    with pytest.raises(ValueError, match="unknown thing 'zzz'. Known"):
        lookup(reg, "zzz", "thing", error=ValueError)


def test_registries_share_the_message():
    with pytest.raises(KeyError, match=r"did you mean 'weight-norm'"):
        get_scorer("weight-norms")
    with pytest.raises(DataError, match=r"unknown augmentation 'flip_crop' \(did you mean 'flip-crop'\?\)"):
        build_augment("flip_crop")
