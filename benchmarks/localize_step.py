"""Benchmark: greedy localisation steps, current search vs the previous one, in one process.

The previous search (the obvious alternative, reproduced here) ran every step on an engine without
the prefix cache and checked the constraints on whole example sets: a chunk of candidates was
scanned on all of the constraint's examples before any was rejected. The current one keeps the
prefix outputs of the fixed example sets across steps, scans a constraint's examples slice by slice
(smallest unedited margin first) dropping a candidate once it cannot pass, and checks the last
constraint candidate by candidate. Both must select the same units with the same step values
(asserted). Times are CPU time of this process (``time.process_time``), per step (the step's
objective scan and constraint checks, not the trajectory snapshot), and the wall time of the whole
search; the machine is shared, so compare the two columns of one run.

    .venv/bin/python benchmarks/localize_step.py runs/probe-erm-fw --group 2 --steps 4 --epoch last
"""

from __future__ import annotations

import argparse
import importlib
import time

import numpy as np
import torch

search = importlib.import_module("spurmem.probes.localize")


def previous_first_admissible(remaining, order, chosen, limits, counts, slice_size, first_chunk=2):
    """The constraint check before this change: whole sets, every candidate of a chunk."""
    if not limits:
        return int(order[0]), {}
    limits = sorted(limits, key=lambda lim: len(lim[1]))
    lo, chunk = 0, first_chunk
    while lo < len(order):
        alive = [int(i) for i in order[lo:lo + chunk]]
        values = {}
        for split, idx, what, floor in limits:
            accs = counts(split, idx, chosen, [remaining[i] for i in alive]) / len(idx)
            values[what] = dict(zip(alive, accs.tolist()))
            alive = [i for i, a in zip(alive, accs) if a >= floor - 1e-12]
            if not alive:
                break
        if alive:
            return alive[0], {what: v[alive[0]] for what, v in values.items()}
        lo, chunk = lo + chunk, chunk * 2
    return None, {}


class _CpuClock:
    """``time.perf_counter`` replaced by CPU time inside the search, so step seconds are CPU seconds."""

    def __enter__(self):
        self.saved = search.time.perf_counter
        search.time.perf_counter = time.process_time

    def __exit__(self, *exc):
        search.time.perf_counter = self.saved


def run(loaded, group, steps, previous: bool):
    saved = search._first_admissible, search._likeliest_to_flip, search.PREFIX_CACHE_MB
    if previous:
        search._first_admissible = previous_first_admissible
        search._likeliest_to_flip = lambda engine, split, idx: idx
        search.PREFIX_CACHE_MB = 0
    try:
        wall = time.perf_counter()
        with _CpuClock():
            result = search.localize(loaded.model, loaded.dataset, group, max_steps=steps, control=False,
                                     device="cpu")
        return result.search, time.perf_counter() - wall
    finally:
        search._first_admissible, search._likeliest_to_flip, search.PREFIX_CACHE_MB = saved


def main() -> None:
    from spurmem.train import load_run

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--group", type=int, default=2)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--epoch", default="last")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_run(args.run_dir, epoch=int(args.epoch) if args.epoch.isdigit() else args.epoch, device="cpu")
    new, new_wall = run(loaded, args.group, args.steps, previous=False)
    old, old_wall = run(loaded, args.group, args.steps, previous=True)
    assert new.units == old.units, (new.units, old.units)
    cols = [c for c in new.steps.columns if c != "seconds"]
    assert new.steps[cols].equals(old.steps[cols]), "the two searches disagree on step values"
    assert new.trajectory.equals(old.trajectory)
    print(f"{args.run_dir} group {args.group}, {len(new.units)} steps, units {new.units} (identical)")
    print(f"{'':>10} {'CPU s/step':>12} {'steps':>40} {'wall s (search)':>16}")
    for name, s, wall in (("previous", old, old_wall), ("current", new, new_wall)):
        per = ", ".join(f"{x:.2f}" for x in s.step_seconds)
        print(f"{name:>10} {np.mean(s.step_seconds):>12.2f} {per:>40} {wall:>16.1f}")
    print(f"speed-up per step: {np.mean(old.step_seconds) / np.mean(new.step_seconds):.1f}x; "
          f"whole search: {old_wall / new_wall:.1f}x")


if __name__ == "__main__":
    main()
