"""Config files and parameters: empty files, YAML tags, binary files, parameter typos and dotted
overrides each give one ConfigError (or UnreadableFileError) naming the file, key or override."""

from __future__ import annotations

import pytest

from spurmem.cli import main
from spurmem.config import ConfigError, load_config
from spurmem.errors import UnreadableFileError
from spurmem.train.config import TrainConfig

TAG = "epochs: 2\nname: !!python/object/apply:os.system ['touch {marker}']\n"


@pytest.mark.parametrize("text", ["", "   \n", "# only a comment\n"])
def test_empty_config_file_is_an_error_naming_it(tmp_path, text):
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"{path}: empty config file"):
        load_config(TrainConfig, path)


def test_binary_config_file_is_unreadable(tmp_path):
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"\xff\xfe\x00\x81" * 8)
    with pytest.raises(UnreadableFileError, match="bin.yaml.*not UTF-8"):
        load_config(TrainConfig, path)


def test_python_tag_in_a_config_file_names_file_and_line(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "c.yaml"
    path.write_text(TAG.format(marker=marker))
    with pytest.raises(ConfigError, match=f"{path}:2: .*python/object/apply"):
        load_config(TrainConfig, path)
    assert not marker.exists()


def test_python_tag_in_a_runs_own_config_yaml_is_one_line(tmp_path, capsys):
    marker = tmp_path / "PWNED"
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(TAG.format(marker=marker))
    (run / "run.json").write_text("{}")
    for args in (["eval", str(run)], ["probe", str(run)], ["mitigate", str(run)],
                 ["train", "--resume", "--run-dir", str(run)]):
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert err.startswith("spurmem: error: ") and "\n" not in err and "Traceback" not in err, err
        assert f"{run / 'config.yaml'}:2" in err, err
    assert not marker.exists()


def test_empty_run_config_yaml_is_an_error(tmp_path):
    from spurmem.train.run import read_config

    (tmp_path / "config.yaml").write_text("")
    with pytest.raises(ConfigError, match="config.yaml: empty config file"):
        read_config(tmp_path)


def test_model_params_typo_names_key_accepted_keys_and_nearest():
    from spurmem.models import build_model

    with pytest.raises(ConfigError) as err:
        build_model("small-cnn", 2, widht=2.0)
    msg = str(err.value)
    assert "'widht'" in msg and "did you mean 'width'" in msg and "widths" in msg
    assert "unexpected keyword" not in msg
    with pytest.raises(ConfigError, match=r"'hiden'.*did you mean 'hidden'"):
        build_model("mlp", 2, hiden=[4])


def test_dataset_and_algorithm_params_typos_suggest_the_nearest_key(shapes):
    from spurmem.data import DataError, load_dataset
    from spurmem.train.algorithms import ALGORITHMS

    with pytest.raises(DataError, match=r"'n_trian'.*did you mean 'n_train'"):
        load_dataset("synthetic-shapes", n_trian=10)
    with pytest.raises(ConfigError, match=r"'lambda_upp'.*did you mean 'lambda_up'"):
        ALGORITHMS["jtt"](shapes, lambda_upp=3)


@pytest.mark.parametrize("override", ["optim.lr=3", "epochs.x=3", "model_paramz.width=2"])
def test_typod_dotted_override_is_blamed_on_the_override(override):
    with pytest.raises(ConfigError) as err:
        load_config(TrainConfig, None, [override])
    assert f"override {override!r}" in str(err.value)
    assert "<defaults>" not in str(err.value)


def test_cli_empty_config_is_one_line(tmp_path, capsys):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("spurmem: error: ") and str(path) in err and "\n" not in err


def test_yaml_alias_bomb_is_refused_but_anchors_work(tmp_path):
    """10^8 values from 80 lines: loading it would pass validation, then dumping or hashing it hangs."""
    bomb = ["dataset_params:", "  a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i, name in enumerate("bcdefgh"):
        bomb.append(f"  {name}: &{name} [" + ", ".join([f"*{'abcdefgh'[i]}"] * 10) + "]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(bomb) + "\n")
    with pytest.raises(ConfigError, match="bomb.yaml: YAML aliases expand"):
        load_config(TrainConfig, path)
    ok = tmp_path / "anchors.yaml"
    ok.write_text("eval_splits: &s [val, test]\naugment_params: {splits: *s}\n")
    assert load_config(TrainConfig, ok).eval_splits == ["val", "test"]
