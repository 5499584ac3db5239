"""The options every sub-command spells the same way: ``--epoch``, ``--device``, ``--seed``, ``--threads``.

Each works both as an option (``--epoch last``) and as ``KEY=VALUE`` (``epoch=last``), in every command
that has it. A command declares which it takes with :func:`add_common_options`; for a command whose
settings are a config (``train``, ``probe``, ``demo``, ...) an option is passed on as that config's
override (``--device cpu`` becomes ``device=cpu``), otherwise ``KEY=VALUE`` sets the option.
:func:`spurmem.cli.parse_with_overrides` does the routing; ``--threads`` (when not a config key) is
applied by :func:`spurmem.cli.main` before the command runs.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable

ROUTES = "_common_routes"  # namespace attribute: option name -> config key (None: the option itself)


def parse_epoch(text: str) -> str | int:
    """``selected``, ``last`` or an epoch number."""
    text = str(text).strip()
    if text.isdigit():
        return int(text)
    if text in ("selected", "last"):
        return text
    raise argparse.ArgumentTypeError(f"epoch must be selected, last or an epoch number, not {text!r}")


def parse_device(text: str) -> str:
    """``auto``, ``cpu`` or ``cuda[:N]`` (whether CUDA is there is checked when the command runs)."""
    text = str(text).strip()
    index = text[len("cuda:"):] if text.startswith("cuda:") else ""
    if text in ("auto", "cpu", "cuda") or index.isdigit():
        return text
    raise argparse.ArgumentTypeError(f"device must be auto, cpu or cuda[:N], not {text!r}")


def parse_count(text: str) -> int:
    """A whole number >= 0."""
    if not str(text).strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, not {text!r}")
    return int(text)


@dataclass(frozen=True)
class CommonOption:
    help: str
    type: Callable[[str], Any]
    metavar: str


COMMON_OPTIONS: dict[str, CommonOption] = {
    "epoch": CommonOption("checkpoint: selected (by the run's rule), last or an epoch number", parse_epoch, "EPOCH"),
    "device": CommonOption("auto (CUDA when present), cpu or cuda[:N]", parse_device, "DEVICE"),
    "seed": CommonOption("random seed", parse_count, "N"),
    "threads": CommonOption("torch CPU threads (0: torch's default; on a busy machine 1 is often fastest)",
                            parse_count, "N"),
}


def add_common_options(parser: argparse.ArgumentParser, defaults: dict[str, Any],
                       config_keys: dict[str, str] | None = None, helps: dict[str, str] | None = None) -> None:
    """Add ``--NAME`` for each name in ``defaults`` (its default) or in ``config_keys`` (the config key it
    overrides; its default is the config's). ``helps`` replaces the standard help of an option."""
    config_keys = config_keys or {}
    routes = dict(parser.get_default(ROUTES) or {})
    for name in [*defaults, *[n for n in config_keys if n not in defaults]]:
        option = COMMON_OPTIONS[name]
        text = (helps or {}).get(name, option.help)
        if name in config_keys:
            routes[name] = config_keys[name]
            parser.add_argument(f"--{name}", type=option.type, default=None, metavar=option.metavar,
                                help=f"{text}; same as {config_keys[name]}=VALUE (default: the config's)")
        else:
            routes[name] = None
            parser.add_argument(f"--{name}", type=option.type, default=defaults[name], metavar=option.metavar,
                                help=f"{text}; same as {name}=VALUE (default: {defaults[name]})")
    parser.set_defaults(**{ROUTES: routes})


def as_options(args: argparse.Namespace, argv: list[str]) -> list[str]:
    """``argv`` with each ``KEY=VALUE`` of the command's own common options (``args`` from a first parse
    says which) written as ``--KEY VALUE``, so argparse checks it like the option."""
    routes: dict[str, str | None] = getattr(args, ROUTES, None) or {}
    out: list[str] = []
    for item in argv:
        key, sep, value = item.partition("=")
        out += [f"--{key}", value] if sep and key in routes and routes[key] is None else [item]
    return out


def common_overrides(args: argparse.Namespace) -> list[str]:
    """The options given that belong to the command's config, as its overrides (``--device cpu`` ->
    ``device=cpu``); appended after the user's ``KEY=VALUE`` so the option wins."""
    routes: dict[str, str | None] = getattr(args, ROUTES, None) or {}
    return [f"{key}={getattr(args, name)}" for name, key in routes.items()
            if key is not None and getattr(args, name, None) is not None]


def apply_common_options(args: argparse.Namespace) -> None:
    """Effects of the common options that no command applies itself: ``--threads`` (torch CPU threads)."""
    routes: dict[str, str | None] = getattr(args, ROUTES, None) or {}
    if "threads" in routes and routes["threads"] is None and getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
