"""Looking a name up in one of the explicit registries (DATASETS, MODELS, SCORERS, ...).

An unknown name is an error that suggests the nearest registered one and lists them all.
"""

from __future__ import annotations

import difflib
from typing import Iterable, Mapping, TypeVar

V = TypeVar("V")


def unknown_name(kind: str, name: str, known: Iterable[str]) -> str:
    """``unknown scorer 'weight_norm' (did you mean 'weight-norm'?). Known: ...``"""
    known = list(known)
    near = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return f"unknown {kind} {name!r}{hint}. Known: {', '.join(known)}"


def lookup(registry: Mapping[str, V], name: str, kind: str, error: type[Exception] = KeyError) -> V:
    """``registry[name]``, or ``error`` naming the nearest registered name."""
    if name not in registry:
        raise error(unknown_name(kind, name, registry))
    return registry[name]


class RegistryNames:
    """The sorted names of registry ``module.attr``, imported only when first iterated or searched, so
    that an argparse ``choices=RegistryNames(...)`` (and ``%(choices)s`` in its help) costs nothing
    until that command's help or parse needs it."""

    def __init__(self, module: str, attr: str) -> None:
        self.module, self.attr = module, attr

    def _names(self) -> list[str]:
        import importlib

        return sorted(getattr(importlib.import_module(self.module), self.attr))

    def __iter__(self):
        return iter(self._names())

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __len__(self) -> int:
        return len(self._names())
