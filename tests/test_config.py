"""The config mechanism: YAML + overrides, errors naming the key, the line and the nearest valid key."""

from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict

from spurmem.config import ConfigError, config_hash, dump_config, load_config, parse_override
from spurmem.train import TrainConfig


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    depth: int = 2


class Stage(BaseModel):
    """A config of another stage: the mechanism is generic."""

    model_config = ConfigDict(extra="forbid")
    k: int = 5
    mode: Literal["zero", "noise"] = "zero"
    inner: Inner = Inner()
    params: dict = {}


def test_defaults_are_the_reference_recipe():
    c = load_config(TrainConfig)
    assert (c.dataset, c.model, c.optimizer, c.lr, c.schedule, c.weight_decay) == (
        "fashion-waterbirds", "small-cnn", "adam", 1e-3, "cosine", 0.0)
    assert (c.batch_size, c.epochs, c.augment, c.selection, c.algorithm) == (128, 30, "none", "val_wga", "erm")


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\nepochs: 3\ndataset_params: {rho: 0.8}\n")
    c = load_config(TrainConfig, path, ["lr=0.01", "dataset_params.rho=0.9", "dataset_params.seed=2",
                                        "eval_splits=[val, test]", "weights=null"])
    assert c.name == "x" and c.epochs == 3 and c.lr == 0.01
    assert c.dataset_params == {"rho": 0.9, "seed": 2}
    assert c.eval_splits == ["val", "test"] and c.weights is None


def test_unknown_key_in_file_names_line_and_nearest(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nepochs: 3\nlearning_rate: 0.1\nbatchsize: 32\n")
    with pytest.raises(ConfigError) as err:
        load_config(TrainConfig, path)
    msg = str(err.value)
    assert f"{path}:4" in msg and "did you mean 'batch_size'" in msg
    assert f"{path}:3" in msg and "'learning_rate'" in msg


def test_unknown_key_in_override_and_wrong_type():
    with pytest.raises(ConfigError, match=r"override 'epoch=3'.*did you mean 'epochs'"):
        load_config(TrainConfig, None, ["epoch=3"])
    with pytest.raises(ConfigError, match=r"batch_size: Input should be a valid integer"):
        load_config(TrainConfig, None, ["batch_size=many"])
    with pytest.raises(ConfigError, match=r"optimizer"):
        load_config(TrainConfig, None, ["optimizer=rmsprop"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(TrainConfig, None, ["epochs"])


def test_generic_nested_models(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("k: 3\ninner:\n  depht: 4\n")
    with pytest.raises(ConfigError) as err:
        load_config(Stage, path)
    assert "inner.depht" in str(err.value) and "did you mean 'inner.depth'" in str(err.value)
    assert f"{path}:3" in str(err.value)
    s = load_config(Stage, None, ["inner.depth=7", "mode=noise", "params.a.b=1"])
    assert s.inner.depth == 7 and s.mode == "noise" and s.params == {"a": {"b": 1}}


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Stage, tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(Stage, tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("k: 1\nmode: [zero\n")
    with pytest.raises(ConfigError, match=r"broken.yaml:\d+: not valid YAML"):
        load_config(Stage, tmp_path / "broken.yaml")


def test_dump_roundtrip_and_hash(tmp_path):
    c = load_config(TrainConfig, None, ["epochs=4", "model_params.width=2"])
    path = tmp_path / "round.yaml"
    path.write_text(dump_config(c))
    again = load_config(TrainConfig, path)
    assert again == c
    assert config_hash(again) == config_hash(c)
    assert config_hash(c, exclude=["name"]) == config_hash(c.model_copy(update={"name": "other"}), exclude=["name"])
    assert config_hash(c) != config_hash(c.model_copy(update={"seed": 1}))


def test_parse_override_values():
    assert parse_override("a=3") == ("a", 3)
    assert parse_override("a=0.5") == ("a", 0.5)
    assert parse_override("a=true") == ("a", True)
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])
    assert parse_override("a=x=y") == ("a", "x=y")
