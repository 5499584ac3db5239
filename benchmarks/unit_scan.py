"""Benchmark: single-unit `zero` scan of ResNet-18 (small-image stem), engine vs the naive loop.

The naive loop is the obvious alternative: for each unit, copy the model, zero the unit
(``intervene``), run the whole split (``metrics.predict``). Both run here, in one process, on the
same examples; the correct counts of every unit that both evaluated are asserted equal.

On a 2-core CPU neither a naive nor an engine scan of all 3,904 units on 2,000 examples fits in a
session (the naive one is days), so by default both are *timed on samples and extrapolated*:
the naive loop on ``--naive-units`` random units (its cost does not depend on the unit), the engine
on ``--engine-units-per-layer`` random units of every layer: per layer, the prefix pass (run once
per batch whatever the number of units) plus the layer's unit count times the measured per-variant
time (scan time minus prefix time, per unit). Prefix and floor passes are timed on a quarter of the
examples and scaled (``--timing-fraction``). ``--engine-units-per-layer
0`` scans every unit. The floor is one suffix forward per unit: per layer, the time of the network
after the layer's output on the examples, times the layer's unit count. The engine can go below it:
where the layer feeds the next conv through per-channel modules only, it pushes one channel through
that conv instead of all of them.

Timings are CPU time of this process (``time.process_time``, all threads), not wall time: the
machine is shared, and CPU time is what the two methods cost whatever else runs beside them.

Peak memory: child processes run an engine scan (and, with ``--screened``, a screened scan of two
whole layers) on N and 4N examples and report their peak resident memory (it should not grow with N).

Screened scan (``--screened``): the engine's screened mode (:mod:`spurmem.probes.scan_screen`) scans
*every* unit on the same examples, timed in full (not extrapolated): a first-order screen clears the
pairs whose prediction it keeps, the rest run exactly. It is not exact by construction, so instead
of an assertion the benchmark reports, for every unit that the naive loop or the exact engine also
evaluated, whether its correct counts are identical, plus the screen's own audit. ``--run RUN_DIR``
scans a trained model (``spurmem train`` output) instead of random weights: what the screen can
clear depends on the margins, and a trained model is what it is for.

    .venv/bin/python benchmarks/unit_scan.py --examples 2000
    .venv/bin/python benchmarks/unit_scan.py --examples 2000 --screened --run runs/erm-fw-resnet18
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch

from spurmem.data import load_dataset
from spurmem.metrics import predict
from spurmem.models import build_model
from spurmem.probes.interventions import intervene
from spurmem.probes.scan import ScanEngine, Screen
from spurmem.probes.units import Unit, candidate_layers


def make_model(dataset, seed: int = 0) -> torch.nn.Module:
    """ResNet-18 with the small stem; BatchNorm statistics set from a few training batches so the
    network is in a realistic regime (random weights, no training needed for a speed benchmark)."""
    torch.manual_seed(seed)
    model = build_model("resnet18", dataset.n_classes, img_size=32)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    model.train()
    from spurmem.data import iterate_batches

    with torch.no_grad():
        for i, batch in enumerate(iterate_batches(dataset["train"], 256, dataset.mean, dataset.std)):
            model(batch.x)
            if i == 3:
                break
    return model.eval()


def naive_counts(model, dataset, split, unit, idx, batch_size):
    with intervene(model, [unit], "zero") as edited:
        p = predict(edited, dataset, split, batch_size=batch_size, device="cpu", indices=torch.as_tensor(idx))
    return np.bincount(p.group, weights=p.correct, minlength=dataset.n_groups).astype(int)


def pass_seconds(engine: ScanEngine, layer: str, split, idx, floor: bool) -> float:
    """Seconds of one pass over ``idx``: with ``floor``, of the network after the layer's output (the
    whole suffix, clean values, no one-channel correction); else of the engine's own prefix."""
    from spurmem.probes.scan_graph import FxSite

    runner = FxSite(engine.graph, layer, layer, use_chain=False) if floor else engine._site(layer, layer)
    total = 0.0
    with torch.no_grad():
        for batch, _ in engine._batches(engine.dataset[split], torch.as_tensor(idx)):
            t = time.process_time()
            pre = runner.run_prefix(batch.x)
            if floor:
                t = time.process_time()
                runner.run_suffix_clean(pre)
            total += time.process_time() - t
    return total


def child(args) -> None:
    dataset = load_dataset("fashion-waterbirds")
    model = make_model(dataset)
    idx = np.arange(args.child)
    engine = ScanEngine(model, dataset, batch_size=args.batch_size, device="cpu")
    if args.screened:  # two whole layers, the widest-map one and a 512-unit one
        units = [Unit("layer1.0.conv1", i) for i in range(64)] + [Unit("layer4.1.conv1", i) for i in range(512)]
        engine.scan(units, "zero", "train", indices=idx, screen=Screen(factor=args.screen_factor,
                                                                       calibration=args.calibration))
    else:
        units = [Unit("layer3.1.conv1", i) for i in range(4)] + [Unit("layer2.1.conv2", 0)]
        engine.scan(units, "zero", "train", indices=idx)
    print(json.dumps({"examples": args.child, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--naive-units", type=int, default=4)
    parser.add_argument("--engine-units-per-layer", type=int, default=1, help="0 = every unit")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--timing-fraction", type=int, default=4,
                        help="prefix and floor passes are timed on 1/N of the examples and scaled (default 4)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--screened", action="store_true", help="also scan every unit in screened mode")
    parser.add_argument("--screen-factor", type=float, default=4.0)
    parser.add_argument("--calibration", type=int, default=32)
    parser.add_argument("--audit-units", type=int, default=16)
    parser.add_argument("--run", default=None, help="a trained run directory (resnet18) instead of random weights")
    parser.add_argument("--epoch", default="last", help="checkpoint of --run (default last)")
    parser.add_argument("--skip-memory", action="store_true", help="skip the peak-memory child runs")
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        child(args)
        return

    dataset = load_dataset("fashion-waterbirds")
    split = "train"
    if args.run:
        from spurmem.train import load_run

        loaded = load_run(args.run, epoch=int(args.epoch) if args.epoch.isdigit() else args.epoch, device="cpu")
        model, dataset = loaded.model.eval(), loaded.dataset
        print(f"trained model: {args.run}, epoch {loaded.epoch}")
    else:
        model = make_model(dataset, args.seed)
    # a random subset (the training split is ordered by group): every group is represented
    idx = np.sort(np.random.default_rng(args.seed).choice(len(dataset[split]), args.examples, replace=False))
    layers = candidate_layers(model)
    n_units = sum(layer.n_units for layer in layers)
    rng = np.random.default_rng(args.seed)
    print(f"resnet18 small stem, {len(layers)} candidate layers, {n_units} units, {args.examples} examples "
          f"of fashion-waterbirds/{split} at 32 px, threads={args.threads}")

    engine = ScanEngine(model, dataset, batch_size=args.batch_size, device="cpu")
    naive_units = [Unit(layers[i].name, int(rng.integers(layers[i].n_units)))
                   for i in rng.choice(len(layers), args.naive_units, replace=False)]
    per_layer = {}
    for layer in layers:
        k = layer.n_units if args.engine_units_per_layer == 0 else min(args.engine_units_per_layer, layer.n_units)
        chosen = sorted(rng.choice(layer.n_units, k, replace=False).tolist())
        per_layer[layer.name] = [Unit(layer.name, i) for i in chosen]
    for u in naive_units:
        if u not in per_layer[u.layer]:
            per_layer[u.layer].append(u)

    engine_seconds, floor_seconds, engine_counts = 0.0, 0.0, {}
    timing_idx = idx[: max(1, len(idx) // args.timing_fraction)]
    scale = len(idx) / len(timing_idx)
    for layer in layers:
        units = per_layer[layer.name]
        t = time.process_time()
        res = engine.scan(units, "zero", split, indices=idx, baseline=False)
        dt = time.process_time() - t
        engine_counts.update({label: res.correct[i] for i, label in enumerate(res.labels)})
        prefix = pass_seconds(engine, layer.name, split, timing_idx, floor=False) * scale
        suffix = pass_seconds(engine, layer.name, split, timing_idx, floor=True) * scale
        per_variant = max(dt - prefix, 0.0) / len(units)
        layer_seconds = dt if len(units) == layer.n_units else prefix + per_variant * layer.n_units
        engine_seconds += layer_seconds
        floor_seconds += suffix * layer.n_units
        print(f"  {layer.name:24s} {layer.n_units:4d} units: engine {layer_seconds / layer.n_units:7.3f} s/unit "
              f"(scan of {len(units)} took {dt:.1f} s, prefix {prefix:.1f} s), floor {suffix:7.3f} s/unit", flush=True)

    naive_seconds = []
    for u in naive_units:
        t = time.process_time()
        counts = naive_counts(model, dataset, split, u, idx, args.batch_size)
        naive_seconds.append(time.process_time() - t)
        assert counts.tolist() == engine_counts[u.id].tolist(), (u.id, counts, engine_counts[u.id])
    naive_total = float(np.mean(naive_seconds)) * n_units
    print(f"correct counts identical for the {len(naive_units)} units both evaluated: "
          f"{', '.join(u.id for u in naive_units)}")
    exact = args.engine_units_per_layer == 0
    print(f"naive loop : {np.mean(naive_seconds):.2f} s/unit on {len(naive_units)} random units -> "
          f"{naive_total / 3600:.2f} h for all {n_units} units (extrapolated), {n_units / naive_total:.3f} units/s")
    print(f"engine     : {engine_seconds / 3600:.2f} h for all units ({'measured' if exact else 'extrapolated per layer: prefix + units x per-variant time'}),"
          f" {n_units / engine_seconds:.3f} units/s")
    print(f"floor      : {floor_seconds / 3600:.2f} h (one suffix pass per unit); engine/floor = "
          f"{engine_seconds / floor_seconds:.2f}")
    print(f"speed-up   : {naive_total / engine_seconds:.1f}x (engine vs naive); floor vs naive "
          f"{naive_total / floor_seconds:.1f}x")

    if args.screened:
        screen = Screen(factor=args.screen_factor, calibration=args.calibration, audit_units=args.audit_units,
                        seed=args.seed)
        screen_engine = ScanEngine(model, dataset, batch_size=args.batch_size, device="cpu")
        t = time.process_time()
        res = screen_engine.scan(None, "zero", split, indices=idx, baseline=False, screen=screen)
        screened_seconds = time.process_time() - t
        rep = res.screen
        row = {label: i for i, label in enumerate(res.labels)}
        same = [label for label, counts in engine_counts.items() if res.correct[row[label]].tolist() == counts.tolist()]
        differ = sorted(set(engine_counts) - set(same))
        print(f"screened   : {screened_seconds:.0f} s CPU for all {len(res.labels)} units (measured), "
              f"{len(res.labels) / screened_seconds:.2f} units/s; screen {rep.seconds_screen:.0f} s, "
              f"exact pairs {rep.seconds_exact:.0f} s (calibration {rep.calibration_examples} examples x every unit)")
        print(f"             {rep.exact_pairs:,} of {rep.pairs:,} pairs ran exactly ({rep.exact_fraction:.2%}), "
              f"{rep.known_unchanged:,} cleared as exactly unchanged; factor {rep.factor}")
        print(f"             audit: {len(rep.audit_units)} units x {rep.audit_pairs // max(len(rep.audit_units), 1)} "
              f"examples run exactly: {rep.audit_flips} flips, {rep.audit_missed} missed among "
              f"{rep.audit_cleared:,} cleared pairs (95% upper bound on the miss rate {rep.miss_rate_upper:.1e})")
        print(f"             correct counts identical to the exact engine/naive loop for {len(same)} of "
              f"{len(engine_counts)} units both evaluated" + (f"; differ: {', '.join(differ)}" if differ else ""))
        print(f"             peak resident memory of this process so far: "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
        print(f"speed-up   : screened {naive_total / screened_seconds:.1f}x vs naive, "
              f"{engine_seconds / screened_seconds:.1f}x vs the exact engine, "
              f"{floor_seconds / screened_seconds:.1f}x vs the exact floor")

    if args.skip_memory:
        return
    for mode in ["exact"] + (["screened"] if args.screened else []):
        peaks = []
        for n in (args.examples // 4, args.examples):
            cmd = [sys.executable, __file__, "--child", str(n), "--batch-size", str(args.batch_size),
                   "--threads", str(args.threads), "--screen-factor", str(args.screen_factor),
                   "--calibration", str(args.calibration)] + (["--screened"] if mode == "screened" else [])
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            peaks.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"peak memory ({mode}): " + ", ".join(f"{p['examples']} examples {p['peak_rss_mb']:.0f} MB" for p in peaks))


if __name__ == "__main__":
    main()
