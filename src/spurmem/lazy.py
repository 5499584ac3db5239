"""Package attributes imported on first use, so that ``import spurmem.<stage>.commands`` (and with it
``spurmem --help``) does not pull in torch, pandas, scipy or matplotlib.

A package ``__init__`` lists what it exports and where each name lives::

    __getattr__, __dir__ = lazy_exports(__name__, {"train": "spurmem.train.trainer", ...})
"""

from __future__ import annotations

import importlib
from typing import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` for ``package``: ``exports`` maps each public name to
    the module defining it; the module is imported when the name is first looked up."""

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        setattr(importlib.import_module(package), name, value)  # later look-ups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(exports) | set(vars(importlib.import_module(package))))

    return __getattr__, __dir__
