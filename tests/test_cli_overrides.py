"""KEY=VALUE overrides may follow options as well as precede them."""

import argparse

import pytest

from spurmem.cli import build_parser, parse_with_overrides


def test_overrides_after_an_option_are_collected():
    parser = build_parser()
    args = parse_with_overrides(parser, ["train", "--config", "c.yaml", "--overwrite", "epochs=3", "lr=0.1"])
    assert args.overrides == ["epochs=3", "lr=0.1"]


def test_a_stray_option_is_still_an_error(capsys):
    parser = build_parser()
    with pytest.raises(SystemExit):
        parse_with_overrides(parser, ["train", "--config", "c.yaml", "--no-such-flag"])
    assert "--no-such-flag" in capsys.readouterr().err


def test_a_command_without_overrides_rejects_key_value(capsys):
    parser = argparse.ArgumentParser(prog="x")
    parser.add_argument("--n", type=int)
    with pytest.raises(SystemExit):
        parse_with_overrides(parser, ["--n", "2", "epochs=3"])
    assert "epochs=3" in capsys.readouterr().err
