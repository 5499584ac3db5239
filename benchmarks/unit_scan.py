"""Benchmark: single-unit `zero` scan of ResNet-18 (small-image stem), engine vs the naive loop vs the floor.

The naive loop is the obvious alternative: for each unit, copy the model, zero the unit
(``intervene``), run the whole split (``metrics.predict``). The floor is one pass of the network
after the unit's layer, per unit (the clean suffix; the engine can go below it where its one-channel
correction replaces the next conv). All three run here, per layer and interleaved (engine, floor,
naive, engine again), on the same examples, so load changes on a shared machine hit them alike;
the correct counts of every unit that both the naive loop and the engine evaluated are asserted equal.

Nothing is guessed from one unit: per layer, the engine scans ``--units-per-layer`` random units
(default 8) twice, with the same engine: the first scan measures the chunk size (see
:mod:`spurmem.probes.scan_tune`), the second uses it. The engine's own per-layer timings
(``ScanResult.layer_scans``: prefix passes and variants, wall and CPU) give the per-unit cost of the
second scan, and a whole layer is extrapolated as prefix + the first scan's tuning overhead + its
units x that cost (a layer the graph sends to plain passes, ``how`` = graph, tunes nothing: both
scans give its per-unit cost). Per layer it prints the path (plain passes or the stacked rows), why
(``LayerScan.why``, with the share of a forward pass that stacking saves) and what was timed; the
last line (``summary ...``) holds the figures to paste: engine/floor and engine vs naive, overall
and on the worst layer, wall and CPU. ``--units-per-layer 0`` scans every unit (one scan per layer, nothing
extrapolated). The naive loop runs ``--naive-units-per-layer`` units of every layer (its cost does
not depend on the unit). Wall and CPU seconds (``time.process_time``: this process, all threads) are
both reported; CPU time is less sensitive to other jobs on a shared machine.

Peak memory: child processes run an engine scan (and, with ``--screened``, a screened scan of two
whole layers) on N and 4N examples and report their peak resident memory (it should not grow with N).

Screened scan (``--screened``): the engine's screened mode (:mod:`spurmem.probes.scan_screen`) scans
*every* unit on the same examples, timed in full (not extrapolated): a first-order screen clears the
pairs whose prediction it keeps, the rest run exactly. It is not exact by construction, so instead
of an assertion the benchmark reports, for every unit that the naive loop or the exact engine also
evaluated, whether its correct counts are identical, plus the screen's own audit. ``--run RUN_DIR``
scans a trained model (``spurmem train`` output) instead of random weights: what the screen can
clear depends on the margins, and a trained model is what it is for.

    .venv/bin/python benchmarks/unit_scan.py --examples 500 --skip-memory
    .venv/bin/python benchmarks/unit_scan.py --examples 2000 --screened --run runs/erm-fw-resnet18
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
from spurmem.probes.scan_tune import Stopwatch
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


def floor_seconds(engine: ScanEngine, layer: str, split, idx) -> np.ndarray:
    """Wall and CPU seconds of one pass of the network after ``layer``'s output over ``idx`` (the
    whole suffix on clean values, no one-channel correction): the floor's cost per unit."""
    from spurmem.probes.scan_graph import FxSite

    runner = FxSite(engine.graph, layer, layer, use_chain=False)
    total = np.zeros(2)
    with torch.no_grad():
        for batch, _ in engine.batches(engine.dataset[split], torch.as_tensor(idx)):
            pre = runner.run_prefix(batch.x)
            clock = Stopwatch()
            runner.run_suffix_clean(pre)
            total += clock.lap()
    return total


def machine() -> str:
    """The CPU model, its logical cores and the load average: beside every figure."""
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 platform.processor())
    return f"{model}, {os.cpu_count()} logical CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"


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
    parser.add_argument("--examples", type=int, default=500)
    parser.add_argument("--units-per-layer", type=int, default=8, help="engine units per layer and scan; 0 = every unit")
    parser.add_argument("--naive-units-per-layer", type=int, default=1)
    parser.add_argument("--layers", default=None, help="comma-separated layer names (default: every candidate layer)")
    parser.add_argument("--max-rows", type=int, default=None, help="fix the engine's chunk (default: measured)")
    parser.add_argument("--compare-rows", type=int, default=None,
                        help="also scan the second units with a fixed chunk of this many rows (the old default: 2048)")
    parser.add_argument("--batch-size", type=int, default=250)
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
          f"of fashion-waterbirds/{split} at 32 px, threads={args.threads}; {machine()}")

    if args.layers:
        wanted = args.layers.split(",")
        layers = [layer for layer in layers if layer.name in wanted]
    engine = ScanEngine(model, dataset, batch_size=args.batch_size, device="cpu", max_rows=args.max_rows)
    fixed = None if args.compare_rows is None else ScanEngine(model, dataset, batch_size=args.batch_size, device="cpu",
                                                              max_rows=args.compare_rows)
    engine_counts: dict[str, np.ndarray] = {}
    totals = {k: np.zeros(2) for k in ("engine", "floor", "naive", "fixed")}  # wall, CPU over all units of the layers
    # worst layer, wall and CPU: the largest engine/floor, the smallest naive/engine, and where
    worst = {"floor": [np.zeros(2), ["", ""]], "naive": [np.full(2, np.inf), ["", ""]]}
    plain_layers = []
    print(f"{'layer':24s} units  path (how: first/second scan) | s/unit, wall (CPU): engine | floor | naive | "
          f"engine/floor  naive/engine")
    for layer in layers:
        every = args.units_per_layer == 0 or 2 * args.units_per_layer >= layer.n_units
        order = rng.permutation(layer.n_units).tolist()
        k = layer.n_units if every else args.units_per_layer
        first = [Unit(layer.name, i) for i in sorted(order[:k])]
        second = [] if every else [Unit(layer.name, i) for i in sorted(order[k:2 * k])]
        naive_units = first[:args.naive_units_per_layer]

        extra = None
        res = engine.scan(first, "zero", split, indices=idx, baseline=False)
        engine_counts.update({label: res.correct[i] for i, label in enumerate(res.labels)})
        tune = res.layer_scans[layer.name]
        floor = floor_seconds(engine, layer.name, split, idx)
        naive = np.zeros(2)
        for u in naive_units:
            clock = Stopwatch()
            counts = naive_counts(model, dataset, split, u, idx, args.batch_size)
            naive += clock.lap()
            assert counts.tolist() == engine_counts[u.id].tolist(), (u.id, counts, engine_counts[u.id])
        naive /= max(len(naive_units), 1)
        prefix = np.array([tune.prefix_seconds, tune.prefix_cpu])
        if every:
            layer_total = prefix + [tune.variant_seconds, tune.variant_cpu]
            info = tune
        else:
            res2 = engine.scan(second, "zero", split, indices=idx, baseline=False)
            engine_counts.update({label: res2.correct[i] for i, label in enumerate(res2.labels)})
            info = res2.layer_scans[layer.name]
            variants2 = np.array([info.variant_seconds, info.variant_cpu])
            if tune.how == "graph":  # nothing tuned: both scans are the same plain passes, average them
                steady = (variants2 + [tune.variant_seconds, tune.variant_cpu]) / (len(first) + len(second))
                overhead = np.zeros(2)
            else:
                steady = variants2 / len(second)
                overhead = np.maximum(np.array([tune.variant_seconds, tune.variant_cpu]) - steady * len(first), 0)
            layer_total = prefix + overhead + steady * layer.n_units
            if fixed is not None:
                res3 = fixed.scan(second, "zero", split, indices=idx, baseline=False)
                assert res3.correct.tolist() == res2.correct.tolist(), layer.name  # whatever the chunk
                f3 = res3.layer_scans[layer.name]
                fixed_total = (np.array([f3.prefix_seconds, f3.prefix_cpu])
                               + np.array([f3.variant_seconds, f3.variant_cpu]) / len(second) * layer.n_units)
                totals["fixed"] += fixed_total
                extra = (f"{'':24s} fixed {args.compare_rows} rows: {fixed_total[0] / layer.n_units:6.3f} "
                         f"({fixed_total[1] / layer.n_units:6.3f}) s/unit; tuned is {fixed_total[0] / layer_total[0]:.2f}x "
                         f"({fixed_total[1] / layer_total[1]:.2f}x CPU) faster; counts identical")
        per_unit = layer_total / layer.n_units
        totals["engine"] += layer_total
        totals["floor"] += floor * layer.n_units
        totals["naive"] += naive * layer.n_units
        for name, ratio, worse in (("floor", per_unit / floor, np.greater), ("naive", naive / per_unit, np.less)):
            for j in range(2):
                if worse(ratio[j], worst[name][0][j]):
                    worst[name][0][j], worst[name][1][j] = ratio[j], layer.name
        if info.plain:
            plain_layers.append(layer.name)
        path = "plain" if info.plain else f"{info.rows} rows"
        print(f"{layer.name:24s} {layer.n_units:4d}  {path:>9s} ({tune.how}/{info.how})"
              f"  | {per_unit[0]:6.3f} ({per_unit[1]:6.3f}) | {floor[0]:6.3f} ({floor[1]:6.3f})"
              f" | {naive[0]:6.3f} ({naive[1]:6.3f}) | {per_unit[0] / floor[0]:5.2f} ({per_unit[1] / floor[1]:4.2f})"
              f"  {naive[0] / per_unit[0]:5.2f} ({naive[1] / per_unit[1]:4.2f})", flush=True)
        share = "" if tune.saved_share is None or tune.how == "graph" else f"stacking saves {tune.saved_share:.1%} of a forward; "
        print(f"{'':24s} why: {share}{tune.why}; tried s/unit and batch {tune.per_unit_seconds}", flush=True)
        if extra:
            print(extra, flush=True)
    n_units = sum(layer.n_units for layer in layers)
    print(f"correct counts of the naive loop identical to the engine's for the {len(layers) * args.naive_units_per_layer} "
          f"units both evaluated")
    what = "measured" if args.units_per_layer == 0 else "per layer: prefix + tuning + units x measured per-unit cost"
    for name, (wall, cpu) in totals.items():
        if name == "fixed" and fixed is None:
            continue
        print(f"{name:6s}: {wall / 3600:6.3f} h wall, {cpu / 3600:6.3f} h CPU for all {n_units} units"
              + (f" ({what})" if name == "engine" else ""))
    e, f, n = totals["engine"], totals["floor"], totals["naive"]
    (wf, wf_at), (wn, wn_at) = worst["floor"], worst["naive"]
    print(f"engine/floor = {e[0] / f[0]:.2f} wall ({e[1] / f[1]:.2f} CPU); worst layer {wf[0]:.2f} wall ({wf[1]:.2f} CPU)")
    if fixed is not None:
        x = totals["fixed"]
        print(f"fixed {args.compare_rows} rows / tuned = {x[0] / e[0]:.2f} wall ({x[1] / e[1]:.2f} CPU)")
    print(f"engine vs naive = {n[0] / e[0]:.2f}x wall ({n[1] / e[1]:.2f}x CPU); worst layer {wn[0]:.2f}x wall ({wn[1]:.2f}x CPU)")
    print(f"at the end: {machine()}")
    print(f"summary ({len(layers)} layers, {n_units} units, {args.examples} examples, threads={args.threads}): "
          f"engine/floor {e[0] / f[0]:.2f} wall, {e[1] / f[1]:.2f} CPU, worst layer {wf[0]:.2f} wall ({wf_at[0]}), "
          f"{wf[1]:.2f} CPU ({wf_at[1]}); engine vs naive {n[0] / e[0]:.2f}x wall, {n[1] / e[1]:.2f}x CPU, "
          f"worst layer {wn[0]:.2f}x wall ({wn_at[0]}), {wn[1]:.2f}x CPU ({wn_at[1]}); "
          f"plain layers: {', '.join(plain_layers) or 'none'}"
          + ("" if fixed is None else f"; fixed {args.compare_rows} rows / tuned {totals['fixed'][0] / e[0]:.2f} wall, "
                                      f"{totals['fixed'][1] / e[1]:.2f} CPU"))
    engine_seconds, floor_seconds_, naive_total = e[1], f[1], n[1]

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
              f"{floor_seconds_ / screened_seconds:.1f}x vs the exact floor")

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
