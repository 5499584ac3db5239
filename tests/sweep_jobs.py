"""A tiny four-job sweep for the sweep and executor tests: colored-digits (8 px), a quarter-width
small CNN, one epoch. The grid's last cell (rho=2) is invalid for the dataset, so that job fails
inside its worker every time it is tried."""

from __future__ import annotations

import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import yaml

BASE = {"name": "cd", "dataset": "colored-digits", "dataset_params": {"upscale": 1}, "model_params": {"width": 0.25},
        "epochs": 1, "batch_size": 128, "lr": 0.01, "eval_init": False}
RHOS = [0.5, 0.7, 0.9, 2.0]  # 2.0 fails: colored-digits needs rho in [0, 1]


def write_sweep(folder: Path, **fields) -> Path:
    """``folder/sweep.yaml`` with the four jobs (``fields`` replace or add top-level keys)."""
    data = {"name": "tiny", "out_dir": str(folder / "out"), "base": BASE, "grid": {"dataset_params.rho": RHOS},
            "workers": 2, "threads_per_job": 1, "retries": 1, **fields}
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_json_stamps(out: Path) -> dict[str, int]:
    """run.json modification time (ns) of every run folder of a sweep."""
    return {p.parent.name: p.stat().st_mtime_ns for p in sorted((out / "runs").glob("*/run.json"))}


@contextmanager
def lock_held_elsewhere(folder: Path) -> Iterator[int]:
    """Hold ``folder``'s run lock in another live process for the block; yields that process's pid."""
    holder = subprocess.Popen([sys.executable, "-c", "import time; from spurmem.locks import acquire; "
                               f"acquire({str(folder)!r}, 'test'); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()
