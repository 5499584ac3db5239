"""docs/cli.md is generated from the argparse parser; it must match every command's current --help."""

from __future__ import annotations

from pathlib import Path

from spurmem.cli import build_parser
from spurmem.report.cli_reference import _subcommands, _walk, render_cli_reference

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_docs_cli_md_matches_the_parser():
    expected = render_cli_reference()
    actual = DOC.read_text(encoding="utf-8") if DOC.is_file() else ""
    assert actual == expected, (
        "docs/cli.md is out of date with the CLI; regenerate it with\n"
        "    .venv/bin/python -m spurmem.report.cli_reference docs/cli.md"
    )


def test_reference_holds_every_command_and_option():
    text = render_cli_reference()
    parser = build_parser()
    commands = [p for p in _walk(parser)][1:]
    assert {name for name, _ in _subcommands(parser)} >= {"report", "runs", "demo"}
    for p in commands:
        assert f"## {p.prog}\n" in text
        for action in p._actions:
            for flag in action.option_strings:
                assert flag in text, f"{p.prog}: option {flag} missing from the reference"
