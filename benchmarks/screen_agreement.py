"""Benchmark: how often the screened scan misses a prediction flip, and what it saves.

For a random sample of units per layer (``--units-per-layer``) of a trained run, the exact engine
and the screened scan (several factor/calibration settings) evaluate the same examples with
per-example results; every (unit, example) pair where the two disagree is a flip the screen missed.
Both run in one process on the same examples; CPU seconds (``time.process_time``) of each.

    .venv/bin/python benchmarks/screen_agreement.py runs/erm-fw-resnet18 --examples 1000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from spurmem.probes.scan import ScanEngine, Screen
from spurmem.probes.units import Unit, candidate_layers
from spurmem.train import load_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--epoch", default="last")
    parser.add_argument("--examples", type=int, default=1000, help="random examples per split")
    parser.add_argument("--splits", nargs="+", default=["train", "test"])
    parser.add_argument("--units-per-layer", type=int, default=8)
    parser.add_argument("--settings", nargs="+", default=["2:8", "2:16", "4:16", "1:16"],
                        help="FACTOR:CALIBRATION screen settings to compare")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_run(args.run_dir, epoch=int(args.epoch) if args.epoch.isdigit() else args.epoch, device="cpu")
    engine = ScanEngine(loaded.model, loaded.dataset, batch_size=250, device="cpu")
    rng = np.random.default_rng(args.seed)
    units = [Unit(layer.name, int(i)) for layer in candidate_layers(engine.model)
             for i in rng.choice(layer.n_units, min(args.units_per_layer, layer.n_units), replace=False)]
    print(f"{args.run_dir} (epoch {loaded.epoch}): {len(units)} units, {args.units_per_layer} per layer, zero")
    for split in args.splits:
        n = len(loaded.dataset[split])
        idx = np.sort(np.random.default_rng(0).choice(n, min(args.examples, n), replace=False))
        t = time.process_time()
        exact = engine.scan(units, "zero", split, indices=idx, per_example=True)
        exact_seconds = time.process_time() - t
        flips = int((exact.example_correct != exact.base_example_correct[None, :]).sum())
        print(f"{split}: {len(idx)} examples, exact engine {exact_seconds:.0f} s CPU, {flips} pairs flip correctness",
              flush=True)
        for setting in args.settings:
            factor, calibration = setting.split(":")
            screen = Screen(factor=float(factor), calibration=int(calibration), audit_units=0)
            t = time.process_time()
            res = engine.scan(units, "zero", split, indices=idx, per_example=True, screen=screen)
            seconds = time.process_time() - t
            missed = int((res.example_correct != exact.example_correct).sum())
            differ = int((res.correct != exact.correct).any(axis=1).sum())
            print(f"  factor {factor} calibration {calibration}: {seconds:.0f} s CPU "
                  f"({exact_seconds / seconds:.1f}x less), {res.screen.exact_fraction:.2%} of pairs exact, "
                  f"missed {missed} of {flips} flips, units with different counts {differ}", flush=True)


if __name__ == "__main__":
    main()
