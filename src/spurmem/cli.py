"""The ``spurmem`` command line. Each stage contributes its sub-commands through ``register``."""

from __future__ import annotations

import argparse
import importlib
import sys

from spurmem import __version__

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
    return parser


def main(argv: list[str] | None = None) -> int:
    from spurmem.config import ConfigError
    from spurmem.data.schema import DataError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (DataError, ConfigError, FileExistsError, FileNotFoundError) as exc:
        print(f"spurmem: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
