"""Benchmark: a probe grid evaluated on the scan engine vs by copy-edit-predict, in one process.

The obvious alternative (and the reference, ``run_probe(use_engine=False)``) edits a copy of the
model and predicts every evaluation split in full for every setting. On the engine a unit selection
runs the layers before its earliest edited unit once per split (cached across settings) and only
the rest of the network per setting. Both grids run here on the same model; their rows are asserted
equal (counts, accuracies and predicted-class histograms exactly; margins to 1e-4). Printed: CPU
time of the whole grid (``time.process_time``: the machine is shared) and the summed per-setting
evaluation time (the rows' ``seconds``), both ways, and the ratios.

    .venv/bin/python benchmarks/probe_grid.py runs/probe-erm-fw --epoch last --repeats 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

from spurmem.probes import ProbeConfig, run_probe


def main() -> None:
    from spurmem.train import load_run

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--epoch", default="last")
    p.add_argument("--repeats", type=int, default=3, help="repeats of the random control")
    p.add_argument("--scorers", default="weight-norm", help="comma-separated unit scorers")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_run(args.run_dir, epoch=int(args.epoch) if args.epoch.isdigit() else args.epoch, device="cpu")
    config = ProbeConfig(scorers=args.scorers.split(","), repeats=args.repeats, device="cpu")
    timings, rows = {}, {}
    for name, use_engine in (("engine", True), ("copy-edit-predict", False)):
        start = time.process_time()
        result = run_probe(loaded.model, loaded.dataset, config, progress=False, use_engine=use_engine)
        rows[name] = result.rows
        timings[name] = (time.process_time() - start, result.rows.drop_duplicates("setting_id")["seconds"].sum())
    fast, ref = rows["engine"], rows["copy-edit-predict"]
    floats = [c for c in fast.columns if c.startswith("margin") or c in ("specificity", "drop")]
    exact = [c for c in fast.columns if c not in floats and c != "seconds"]
    pd.testing.assert_frame_equal(fast[exact], ref[exact])
    np.testing.assert_allclose(fast[floats].to_numpy(float), ref[floats].to_numpy(float), rtol=1e-4, atol=1e-4)
    n = fast["setting_id"].nunique()
    print(f"{args.run_dir}: {n} settings x {fast['split'].nunique()} splits, rows identical (margins to 1e-4)")
    print(f"{'':>18} {'grid CPU s':>11} {'eval wall s (sum)':>18}")
    for name, (cpu, wall) in timings.items():
        print(f"{name:>18} {cpu:>11.1f} {wall:>18.1f}")
    (cpu_e, wall_e), (cpu_r, wall_r) = timings["engine"], timings["copy-edit-predict"]
    print(f"speed-up: grid CPU {cpu_r / cpu_e:.2f}x, evaluation {wall_r / wall_e:.2f}x")


if __name__ == "__main__":
    main()
