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
