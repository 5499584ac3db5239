"""The ``spurmem`` command line. Each stage contributes its sub-commands through ``register``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from spurmem import __version__, progress
from spurmem.errors import one_line

# Modules that define ``register(subparsers)``; each adds its own sub-commands.
COMMAND_MODULES = [
    "spurmem.data.commands",
    "spurmem.report.commands",
    "spurmem.probes.commands",
    "spurmem.train.commands",
    "spurmem.train.mitigate_commands",
    "spurmem.memorization.commands",
    "spurmem.jobs.commands",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spurmem",
        description="Find, measure and remove spurious memorisation in neural networks.",
    )
    parser.add_argument("--version", action="version", version=f"spurmem {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (also: SPURMEM_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for leaf in [parser, *_leaves(sub)]:
        progress.add_options(leaf)
    return parser


def _leaves(sub: argparse._SubParsersAction) -> list[argparse.ArgumentParser]:
    out = []
    for child in dict.fromkeys(sub.choices.values()):
        nested = [a for a in child._actions if isinstance(a, argparse._SubParsersAction)]
        out += _leaves(nested[0]) if nested else [child]
    return out


def main(argv: list[str] | None = None) -> int:
    """Run one command. A SpurmemError or an OSError (a file missing, unreadable, a folder where a
    file should be) is one ``spurmem: error:`` line on stderr and exit status 2; the traceback is
    shown only with ``--debug`` or ``SPURMEM_DEBUG=1``."""
    from spurmem.cli_options import apply_common_options
    from spurmem.errors import SpurmemError

    parser = build_parser()
    args = parse_with_overrides(parser, argv)
    apply_common_options(args)  # --threads
    debug = getattr(args, "debug", False) or os.environ.get("SPURMEM_DEBUG", "") not in ("", "0")
    try:
        with progress.options(args), warnings.catch_warnings():
            if not debug:
                warnings.showwarning = _one_line_warning
            return int(args.func(args) or 0)
    except (SpurmemError, OSError) as exc:
        if debug:
            raise
        print(f"spurmem: error: {one_line(exc)}", file=sys.stderr)
        return 2


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as ``spurmem: warning: ...`` on one line, without Python's source line (``--debug`` keeps
    Python's format)."""
    text = " ".join(str(message).split())
    print(f"spurmem: warning: {text}", file=file or sys.stderr)


def parse_with_overrides(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse, letting KEY=VALUE overrides follow options too (``RUN --models 2 epochs=3``), and routing the
    common options (``spurmem.cli_options``): ``epoch=last`` sets ``--epoch`` where that is the command's
    own option, and ``--device cpu`` becomes the override ``device=cpu`` where the device is a config key."""
    from spurmem.cli_options import as_options, common_overrides

    argv = list(sys.argv[1:] if argv is None else argv)
    first, _ = parser.parse_known_args(argv)  # which command, hence which options are its own
    args, extra = parser.parse_known_args(as_options(first, argv))
    target = next((name for name in ("overrides", "params") if isinstance(getattr(args, name, None), list)), None)
    if "--debug" in extra:  # the global flag is accepted after the sub-command too
        extra = [e for e in extra if e != "--debug"]
        args.debug = True
    if extra:
        stray = [e for e in extra if e.startswith("-") or "=" not in e]
        if target is None or stray:
            parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
        getattr(args, target).extend(extra)
    if target is not None:
        getattr(args, target).extend(common_overrides(args))
    return args


if __name__ == "__main__":
    sys.exit(main())
