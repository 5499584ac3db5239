"""One convention for the whole command line: fast ``--help``, the same epoch/device/seed/threads
options everywhere, clean errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from spurmem.cli import build_parser, main

HEAVY = ("torch", "matplotlib", "scipy", "pandas")


def test_building_the_parser_imports_no_heavy_library():
    code = ("import json, sys; from spurmem.cli import build_parser; build_parser(); "
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert json.loads(out.stdout) == [], "spurmem --help must not import these (import them inside commands)"


def _parse(argv: list[str]):
    """The namespace a command runs with (``spurmem probe`` dispatches its grid and sub-actions itself)."""
    import argparse
    import importlib

    from spurmem.cli import parse_with_overrides
    from spurmem.probes.commands import PROBE_ACTIONS, grid_parser

    if argv[0] != "probe":
        return parse_with_overrides(build_parser(), argv)
    if argv[1] in PROBE_ACTIONS:
        sub = argparse.ArgumentParser(prog="x")
        importlib.import_module(PROBE_ACTIONS[argv[1]]).add_arguments(sub)
        return parse_with_overrides(sub, argv[2:])
    return parse_with_overrides(grid_parser(), argv[1:])


# (command line, where the value lands: an attribute of the namespace, or "overrides" for a config key)
EPOCH_COMMANDS = [
    (["probe", "RUN"], "overrides"),
    (["probe", "localize", "RUN", "--group", "1"], "epoch"),
    (["memorization", "units", "RUN"], "epoch"),
    (["memorization", "examples", "RUN"], "epoch"),
    (["memorization", "gap", "RUN"], "epoch"),
    (["eval", "RUN"], "epoch"),
    (["mitigate", "RUN"], "epoch"),
]


@pytest.mark.parametrize("spelling", [["--epoch", "last"], ["epoch=last"]])
@pytest.mark.parametrize("argv,where", EPOCH_COMMANDS, ids=[" ".join(a[:2]) for a, _ in EPOCH_COMMANDS])
def test_epoch_is_spelled_both_ways_in_every_command(argv, where, spelling):
    args = _parse([*argv, *spelling])
    if where == "overrides":
        assert args.overrides == ["epoch=last"]
    else:
        assert args.epoch == "last"
        assert "epoch=last" not in (getattr(args, "overrides", None) or [])


@pytest.mark.parametrize("argv,key", [
    (["train"], "device"), (["probe", "RUN"], "device"), (["demo"], "device"), (["compare"], "train.device"),
])
def test_device_option_of_a_config_command_becomes_its_override(argv, key):
    assert _parse([*argv, "--device", "cpu"]).overrides == [f"{key}=cpu"]
    assert _parse([*argv, "device=cpu"]).overrides == ["device=cpu"]  # the config's own key, unchanged


@pytest.mark.parametrize("argv", [["memorization", "units", "RUN"], ["eval", "RUN"],
                                  ["probe", "localize", "RUN", "--group", "1"]])
def test_device_seed_threads_as_key_value_set_the_options(argv):
    args = _parse([*argv, "device=cpu", "threads=1", *(["seed=3"] if "eval" not in argv else [])])
    assert (args.device, args.threads) == ("cpu", 1)
    assert "eval" in argv or args.seed == 3


def test_demo_takes_threads_as_option_and_setting():
    assert _parse(["demo", "--threads", "1"]).overrides == ["threads=1"]
    from spurmem.demo import DemoConfig

    assert DemoConfig(threads=1).threads == 1


def test_a_bad_epoch_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        _parse(["memorization", "units", "RUN", "epoch=latest"])
    assert "epoch must be selected, last or an epoch number" in capsys.readouterr().err


def test_cuda_without_cuda_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    import torch

    from spurmem.config import ConfigError
    from spurmem.device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda")
    assert main(["train", "--run-dir", str(tmp_path / "r"), "device=cuda", "epochs=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spurmem: error: device='cuda'") and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "r").exists(), "refused before the run directory is made"


@pytest.mark.parametrize("override,hint", [
    ("model_params.widht=2", "did you mean 'width'"),
    ("dataset_params.rhoo=0.9", "did you mean 'rho'"),
    ("algorithm_params.etaa=0.1", "did you mean 'eta'"),
])
def test_print_config_rejects_unknown_parameters(override, hint, capsys):
    assert main(["train", "--print-config", "algorithm=groupdro", override]) == 2
    err = capsys.readouterr().err
    assert override.split(".")[1].split("=")[0] in err and hint in err


def test_print_config_prints_a_valid_config(capsys):
    assert main(["train", "--print-config", "model_params.width=0.5", "dataset_params.rho=0.9"]) == 0
    assert "width: 0.5" in capsys.readouterr().out


def test_help_shows_no_doubled_percent_signs():
    from spurmem.report.cli_reference import render_cli_reference

    text = render_cli_reference()
    assert "%%" not in text and "top 1% and 10% of units" in text.replace("\n", " ")


def test_python_dash_m_spurmem_runs_the_command_without_heavy_imports():
    """``python -m spurmem --help`` is the ``spurmem`` command (it failed with "No module named
    spurmem.__main__"), and it answers without importing torch."""
    code = ("import json, runpy, sys; sys.argv = ['spurmem', '--help']\n"
            "try:\n    runpy.run_module('spurmem', run_name='__main__')\n"
            "except SystemExit as stop:\n    code = stop.code\n"
            f"print(json.dumps([code, [m for m in {HEAVY!r} if m in sys.modules]]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert "usage: spurmem" in out.stdout
    exit_code, heavy = json.loads(out.stdout.strip().splitlines()[-1])
    assert exit_code in (0, None) and heavy == []
    plain = subprocess.run([sys.executable, "-m", "spurmem", "runs", "--help"], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert plain.returncode == 0 and "usage: spurmem runs" in plain.stdout
