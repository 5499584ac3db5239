"""Data-parallel training on the CPU: ``torchrun --nproc_per_node=N`` (gloo, 1 thread a process) vs one
process with N threads and with 1 thread, the same config and global batch (the obvious alternatives on
one machine).

Both sides run ``spurmem train`` as a subprocess into a temporary folder; the figures are the training
seconds the run records (``run.json`` ``timings.train``: the optimiser steps, no evaluation), the
steps/s, and the whole command's wall time (start-up, evaluation and checkpoints included).

Usage: .venv/bin/python benchmarks/ddp_scaling.py [--procs 2] [--repeats 1] [KEY=VALUE ...]
       (default config: dataset=fashion-waterbirds epochs=1 eval_splits=[val])
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def run(cmd: list[str], threads: int) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1", MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]))
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("overrides", nargs="*", default=["dataset=fashion-waterbirds", "epochs=1", "eval_splits=[val]"])
    args = ap.parse_args()
    n = args.procs
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for label, launcher, threads in (
                (f"1 process x {n} threads", [sys.executable, "-m", "spurmem"], n),
                ("1 process x 1 thread", [sys.executable, "-m", "spurmem"], 1),
                (f"torchrun {n} processes x 1 thread (gloo)",
                 [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}", "--master_addr=127.0.0.1",
                  f"--master_port={29700 + rep}", "-m", "spurmem"], 1),
            ):
                run_dir = Path(tmp) / f"{rep}-{len(rows)}"
                wall = run([*launcher, "train", *args.overrides, f"threads={threads}", "--run-dir", str(run_dir)], threads)
                info = json.loads((run_dir / "run.json").read_text())
                train_s = info["timings"]["train"]
                steps = info["steps_per_epoch"] * info["epochs"]
                rows.append((label, train_s, steps / train_s, wall))
                print(f"{label:<40} train {train_s:7.1f} s  {steps / train_s:6.2f} steps/s  wall {wall:7.1f} s",
                      flush=True)
    best = {label: min(r[1] for r in rows if r[0] == label) for label in dict.fromkeys(r[0] for r in rows)}
    many = next(label for label in best if label.startswith("torchrun"))
    for label, seconds in best.items():
        if label != many:
            print(f"training-time ratio ({label} / {many}, best of {args.repeats}): {seconds / best[many]:.2f}x")


if __name__ == "__main__":
    main()
