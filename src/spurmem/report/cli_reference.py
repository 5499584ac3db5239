"""docs/cli.md, generated from the argparse parser so the reference always matches ``--help``.

Regenerate after changing any command::

    .venv/bin/python -m spurmem.report.cli_reference docs/cli.md

``tests/test_report_cli_reference.py`` fails when the file and the parser disagree.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

HELP_WIDTH = 100
HEADER = """# Command-line reference

Every `spurmem` command with its complete `--help`. This file is generated from the parser by
`python -m spurmem.report.cli_reference docs/cli.md`; a test checks that it is current.

## Conventions

- **One spelling for the shared options.** `--epoch`, `--device`, `--seed` and `--threads` mean the
  same in every command that has them, and each may equally be written `KEY=VALUE`:
  `spurmem probe RUN --epoch last` and `spurmem probe RUN epoch=last` are the same command, as are
  `spurmem memorization units RUN --epoch last` and `... epoch=last`. Where the setting lives in a
  config (`train`, `probe`, `mitigate`, `compare`, `demo`) the option is passed on as that config's
  override (`--device cpu` is `device=cpu`; in `compare` it is `train.device=cpu`) and wins over a
  `KEY=VALUE` of the same key.
- `--epoch`: `selected` (the epoch the run's selection rule chose), `last`, or an epoch number.
- `--device`: `auto` (CUDA when present, else the CPU), `cpu` or `cuda[:N]`; asking for CUDA on a
  machine without it is a one-line error.
- `--threads N`: torch CPU threads (0 leaves torch's default); on a busy machine `--threads 1` is
  often fastest.
- `KEY=VALUE` overrides may come before or after the options; values are parsed as YAML
  (`k=[1,3]`, `weights=null`). Unknown keys are errors that name the nearest valid key.
- Every error spurmem raises on purpose is one line on stderr and exit status 2.
"""


@contextmanager
def _fixed_width(width: int) -> Iterator[None]:
    """argparse wraps help to the terminal width (``COLUMNS``); pin it so the output is reproducible."""
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    """(name, parser) of every direct sub-command, in registration order, aliases left out."""
    out, seen = [], set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if id(sub) not in seen:
                    seen.add(id(sub))
                    out.append((name, sub))
    return out


def _walk(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for _, sub in _subcommands(parser):
        yield from _walk(sub)


def _dispatched_actions() -> list[argparse.ArgumentParser]:
    """Sub-actions that a command dispatches itself instead of through argparse sub-parsers
    (``spurmem probe ACTION``, registered in ``PROBE_ACTIONS``), built as their command builds them."""
    import importlib

    from spurmem.probes.commands import PROBE_ACTIONS, available_actions

    parsers = []
    for name in available_actions():
        sub = argparse.ArgumentParser(prog=f"spurmem probe {name}")
        importlib.import_module(PROBE_ACTIONS[name]).add_arguments(sub)
        parsers.append(sub)
    return parsers


def render_cli_reference(parser: argparse.ArgumentParser | None = None) -> str:
    """Markdown: a list of commands, then each command's ``--help`` in a code block."""
    with _fixed_width(HELP_WIDTH):
        if parser is None:
            from spurmem.cli import build_parser

            parser = build_parser()
        parsers = list(_walk(parser))
        if any(p.prog == "spurmem probe" for p in parsers):
            at = next(i for i, p in enumerate(parsers) if p.prog == "spurmem probe") + 1
            parsers[at:at] = _dispatched_actions()
        lines = [HEADER, "## Commands", ""]
        for p in parsers[1:]:
            anchor = p.prog.replace(" ", "-")
            lines.append(f"- [`{p.prog}`](#{anchor})")
        lines.append("")
        for p in parsers:
            lines += [f"## {p.prog}", "", "```text", p.format_help().rstrip(), "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = render_cli_reference()
    if argv:
        Path(argv[0]).write_text(text, encoding="utf-8")
        print(f"wrote {argv[0]}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
