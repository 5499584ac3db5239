"""The ``spurmem`` command line. Each stage contributes its sub-commands through ``register``."""

from __future__ import annotations

import argparse
import importlib
import sys

from spurmem import __version__, progress

# Modules that define ``register(subparsers)``; each adds its own sub-commands.
COMMAND_MODULES = [
    "spurmem.data.commands",
    "spurmem.report.commands",
    "spurmem.probes.commands",
    "spurmem.train.commands",
    "spurmem.train.mitigate_commands",
    "spurmem.memorization.commands",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spurmem",
        description="Find, measure and remove spurious memorisation in neural networks.",
    )
    parser.add_argument("--version", action="version", version=f"spurmem {__version__}")
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
    from spurmem.errors import SpurmemError

    parser = build_parser()
    args = parse_with_overrides(parser, argv)
    try:
        with progress.options(args):
            return int(args.func(args) or 0)
    except (SpurmemError, FileExistsError, FileNotFoundError) as exc:
        print(f"spurmem: error: {exc}", file=sys.stderr)
        return 2


def parse_with_overrides(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse, letting KEY=VALUE overrides follow options too (``RUN --models 2 epochs=3``)."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        target = next((name for name in ("overrides", "params") if isinstance(getattr(args, name, None), list)), None)
        stray = [e for e in extra if e.startswith("-") or "=" not in e]
        if target is None or stray:
            parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
        getattr(args, target).extend(extra)
    return args


if __name__ == "__main__":
    sys.exit(main())
