"""benchmarks/gpu_check.py end to end on the CPU (--smoke), and the shell entry point (scripts/gpu_check.sh)."""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


def test_smoke_run_writes_every_row_with_sane_numbers(tmp_path, monkeypatch):
    gpu_check = _gpu_check()
    monkeypatch.setenv("OUT", str(tmp_path))  # the table goes to $OUT/gpu_check.md
    rows = gpu_check.main(["--smoke", "--device", "cpu"])
    assert [r.key for r in rows] == list(gpu_check.ROW_KEYS)
    by_key = {r.key: r for r in rows}
    for key in ("erm-fp32", "erm-bf16", "erm-bf16-rrc", "framework-bf16", "hand-fp32", "hand-bf16", "scan"):
        value = by_key[key].value
        assert value is not None and math.isfinite(value) and 0 < value < 1e6, (key, value)
    assert by_key["scan"].unit == "units/s" and "exact pairs" in by_key["scan"].note
    assert by_key["framework-bf16"].note.endswith("of the ERM step")
    assert by_key["ddp"].value is None and by_key["ddp"].note.startswith("skipped: 0 CUDA GPU")
    text = (tmp_path / "gpu_check.md").read_text()
    assert text.count("\n| ") == 1 + len(gpu_check.ROW_KEYS)  # header + one line per row
    assert "torch " in text and "device: cpu" in text and "screened unit scan" in text


def test_the_budget_skips_later_sections(tmp_path):
    rows = _gpu_check().main(["--smoke", "--device", "cpu", "--budget", "0", "--out", str(tmp_path / "t.md")])
    assert all(r.value is None and "budget" in r.note for r in rows) and len(rows) == 8


def test_shell_script_finds_python_and_passes_arguments(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--help"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0 and "--smoke" in done.stdout
    env["PYTHON"] = str(tmp_path / "no-python")
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 2 and "cannot import torch" in done.stderr
