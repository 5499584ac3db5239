"""``spurmem memorization {units,examples,gap}``: memorisation per unit, per example and per group.

Outputs go to ``RUN_DIR/memorization/`` (tidy CSVs, a JSON summary, PNG figures). ``units`` and
``examples`` each write their files as one set (``spurmem.fileset``: ``units.manifest.json`` /
``examples.manifest.json`` last) while holding the folder's lock (``spurmem.locks``); every command
leaves an experiment record in ``RUN_DIR/records/``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spurmem.cli_options import add_common_options

OUT_DIR = "memorization"
SCREEN_HINT_UNITS = 1000  # above this many units an exact scan of three splits takes hours on a CPU


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("memorization", help="memorisation per unit, per example (Feldman) and per group (gap)",
                       description="Quantify memorisation (docs/method.md §5.3): which units hold it, which examples are "
                                   "memorised, and each group's train/held-out gap.")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    u = actions.add_parser(
        "units", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="score every unit: minority train drop minus held-out drop when it alone is zeroed",
        description="Zero every candidate unit alone (fast scan engine) and score it by the drop in pooled "
                    "minority-group training accuracy minus the drop in held-out accuracy (per minority group as "
                    "well). Reports the ranked table, the share of the total positive score held by the top 1% "
                    "and 10% of units, the cumulative-share curve and per-layer totals, each against the random "
                    "expectation (uniform, and a sign-flip null over units), and says whether memorisation is "
                    "concentrated.",
        epilog="outputs (RUN_DIR/memorization/): units_ranked.csv, units_groups.csv (unit x group), "
               "units_curve.csv + units_curve.png, units_layers.csv, units_summary.json (with what --layers and "
               "--examples-per-group limited)\n\n"
               "examples:\n  spurmem memorization units runs/erm-fashion-waterbirds --heldout test\n"
               "  spurmem memorization units runs/mnv2 --screen --layers 'features.1[4-8].*' --examples-per-group 50 "
               "--out /tmp/mnv2-units")
    u.add_argument("run_dir", type=Path)
    u.add_argument("--heldout", default="test", choices=("test", "val"), help="held-out split (default test)")
    u.add_argument("--intervention", default="zero", help="edit applied to each unit (default zero, docs/method.md §5.3)")
    u.add_argument("--null-draws", type=int, default=1000, help="sign-flip null draws (default 1000)")
    add_common_options(u, {"epoch": "selected", "seed": 0, "device": "auto", "threads": 0})
    u.add_argument("--screen", action="store_true",
                   help="screened scan: run exactly only the unit-example pairs a first-order screen cannot "
                        "clear (much faster on wide models; the summary reports its audit)")
    u.add_argument("--screen-factor", type=float, default=2.0,
                   help="screen safety factor, >= 1 (default 2; larger runs more pairs exactly)")
    u.add_argument("--calibration", type=int, default=16,
                   help="examples per split run exactly for every unit to set its slack (default 16)")
    u.add_argument("--audit-units", type=int, default=16,
                   help="random units run exactly on every example to count the screen's misses (default 16)")
    u.add_argument("--layers", nargs="+", metavar="LAYER", default=None,
                   help="scan only these layers: names or glob patterns, e.g. 'features.1*' classifier.1 "
                        "(recorded in the summary)")
    u.add_argument("--examples-per-group", type=int, metavar="N", default=None,
                   help="scan at most N random examples of each group of each split (seeded by --seed, "
                        "recorded in the summary)")
    u.add_argument("--out", type=Path, default=None,
                   help="write the outputs here instead of RUN_DIR/memorization (e.g. for a limited scan)")
    u.set_defaults(func=_units)

    e = actions.add_parser(
        "examples", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="Feldman-style per-example memorisation from M models trained on random halves",
        description="Train M models (complementary random halves of the training set, the run's own recipe) "
                    "and score each training example by its accuracy when included minus when held out. Reports "
                    "the distribution per group and, when units_ranked.csv exists (run `memorization units` "
                    "first), which examples flip first when the top-k units are zeroed together.",
        epilog="outputs (RUN_DIR/memorization/): examples.csv, examples_groups.csv, examples_flips.csv, "
               "examples_summary.json; the half-data runs under halves/ (reused on resume)\n\n"
               "example (overrides before options):\n  spurmem memorization examples runs/erm-fashion-waterbirds epochs=15 --models 8")
    e.add_argument("run_dir", type=Path)
    e.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="training-config overrides for the half models")
    e.add_argument("--models", type=int, default=8, help="number of half-data models, even (default 8)")
    e.add_argument("--flip-k", type=int, default=10, help="top-k units zeroed together for the flip order")
    add_common_options(e, {"epoch": "last", "seed": 0, "device": "auto", "threads": 0},
                       helps={"epoch": "checkpoint of each half model to evaluate", "seed": "seed of the random halves"})
    e.set_defaults(func=_examples)

    g = actions.add_parser(
        "gap", help="train vs held-out accuracy per group, with CIs over runs",
        description="The memorisation gap acc_g(train) - acc_g(held-out) per group at the chosen epoch; one run "
                    "gives 95% Newcombe score intervals (never zero width at 0% or 100% accuracy), several "
                    "runs (seeds) a t-interval over runs.",
        epilog="outputs: RUN_DIR/memorization/gap_runs.csv and gap_summary.csv for every RUN_DIR given "
               "(or --out DIR)\n\nexample:\n  spurmem memorization gap runs/erm-seed0 runs/erm-seed1")
    g.add_argument("run_dirs", type=Path, nargs="+")
    g.add_argument("--heldout", default="test", choices=("test", "val"))
    g.add_argument("--out", type=Path, default=None, help="write the tables here instead of each run's folder")
    add_common_options(g, {"epoch": "selected"})
    g.set_defaults(func=_gap)


def _units(args: argparse.Namespace) -> int:
    from spurmem.memorization.units import unit_memorization
    from spurmem.probes.scan import Screen
    from spurmem.probes.units import enumerate_units
    from spurmem.fileset import write_set
    from spurmem.locks import folder_lock
    from spurmem.record import json_text, record_command
    from spurmem.train import load_run

    loaded = load_run(args.run_dir, epoch=args.epoch, device=args.device)
    out = args.out or args.run_dir / OUT_DIR
    n_units = len(enumerate_units(loaded.model))
    if n_units > SCREEN_HINT_UNITS and not (args.screen or args.layers):
        print(f"note: {n_units} units, each run exactly on every example of three splits; on a CPU this can take "
              f"hours. --screen runs exactly only the pairs a first-order screen cannot clear, --layers and "
              f"--examples-per-group narrow the scan (docs/memorization.md)", file=sys.stderr)
    screen = Screen(factor=args.screen_factor, calibration=args.calibration, audit_units=args.audit_units,
                    seed=args.seed) if args.screen else None
    config = {"heldout": args.heldout, "intervention": args.intervention, "epoch": loaded.epoch,
              "null_draws": args.null_draws, "seed": args.seed, "layers": args.layers,
              "examples_per_group": args.examples_per_group,
              "screen": None if screen is None else {"factor": screen.factor, "calibration": screen.calibration,
                                                     "audit_units": screen.audit_units}}
    with folder_lock(out, "memorization units"), \
            record_command(args.run_dir, "memorization units", config=config, seeds=[args.seed]) as rec:
        with rec.timed("scan"):
            result = unit_memorization(loaded.model, loaded.dataset, heldout=args.heldout,
                                       intervention=args.intervention, null_draws=args.null_draws, seed=args.seed,
                                       device=args.device, progress=True, screen=screen, layers=args.layers,
                                       examples_per_group=args.examples_per_group)
        result.summary.update({"run_dir": str(args.run_dir), "epoch": loaded.epoch})
        files: dict[str, str | bytes] = {
            f"{name}.csv": table.to_csv(index=False)
            for name, table in (("units_ranked", result.ranked), ("units_groups", result.groups),
                                ("units_curve", result.curve), ("units_layers", result.layers))}
        files["units_summary.json"] = json_text(result.summary)
        files["units_curve.png"] = _curve_figure(result.curve, result.summary)
        write_set(out, "units", files)
        rec.outputs.append(str(out))
    s = result.summary
    print(f"unit memorisation, {s['units']} units, minority gap {s['base_minority_gap']:+.3f} "
          f"(train {s['base_minority_train_acc']:.3f}, {s['heldout_split']} {s['base_minority_heldout_acc']:.3f})")
    print(f"  {s['statement']}")
    print(result.layers[["layer", "units", "positive_score", "share", "uniform_share"]].to_string(index=False))
    print(f"  -> {out}")
    return 0


def _curve_figure(curve, summary: dict) -> bytes:
    """The cumulative-share figure as PNG bytes."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(curve.fraction_of_units, curve.cumulative_share, label="observed")
    ax.plot(curve.fraction_of_units, curve.null_mean, "--", label="sign-flip null (mean)")
    ax.fill_between(curve.fraction_of_units, curve.null_lo, curve.null_hi, alpha=0.2, label="null 95%")
    ax.plot(curve.fraction_of_units, curve.uniform, ":", color="grey", label="uniform")
    ax.set_xscale("log")
    ax.set_xlabel("fraction of units (ranked by score)")
    ax.set_ylabel("cumulative share of positive score")
    ax.set_title(f"unit-level memorisation ({summary['units']} units)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def _examples(args: argparse.Namespace) -> int:
    import pandas as pd

    from spurmem.config import parse_override
    from spurmem.memorization.examples import example_memorization, flip_order, flips_vs_memorization
    from spurmem.fileset import check_set, write_set
    from spurmem.locks import folder_lock
    from spurmem.record import json_text, record_command
    from spurmem.train import load_run

    loaded = load_run(args.run_dir, epoch="selected", device=args.device)
    overrides = dict(parse_override(item) for item in args.overrides)
    out = args.run_dir / OUT_DIR
    with folder_lock(out, "memorization examples"), \
            record_command(args.run_dir, "memorization examples",
                           config={"models": args.models, "epoch": args.epoch, "overrides": overrides},
                           seeds=[args.seed]) as rec:
        result = example_memorization(loaded.config, loaded.dataset, out, models=args.models, seed=args.seed,
                                      epoch=args.epoch, device=args.device, progress=True, **overrides)
        files = {"examples.csv": result.examples.to_csv(index=False),
                 "examples_groups.csv": result.groups.to_csv(index=False)}
        summary = {**result.info, "run_dir": str(args.run_dir)}
        ranked_path = out / "units_ranked.csv"
        units_problem = check_set(out, "units")
        if ranked_path.exists() and units_problem is None:
            ranked = pd.read_csv(ranked_path).unit.tolist()
            flips = flip_order(loaded.model, loaded.dataset, ranked, k_max=args.flip_k, device=args.device,
                               progress=True)
            files["examples_flips.csv"] = flips.to_csv(index=False)
            summary["flips"] = flips_vs_memorization(flips, result.examples)
            summary["flip_units"] = ranked[: args.flip_k]
        else:
            summary["flips"] = (f"skipped: {units_problem}" if units_problem else
                                f"skipped: {ranked_path} missing (run `spurmem memorization units` first)")
            (out / "examples_flips.csv").unlink(missing_ok=True)  # an older run's flips are not this set's
        files["examples_summary.json"] = json_text(summary)
        write_set(out, "examples", files)
        rec.outputs.append(str(out))
    print(result.groups[["group_name", "count", "mem_mean", "mem_median", "share_high", "share_of_all_high"]]
          .to_string(index=False))
    print(f"  -> {out}")
    return 0


def _gap(args: argparse.Namespace) -> int:
    from spurmem.locks import folder_lock
    from spurmem.memorization.gap import gap_report
    from spurmem.record import write_text_atomic

    report = gap_report(args.run_dirs, heldout=args.heldout, epoch=args.epoch)
    targets = [args.out] if args.out else [d / OUT_DIR for d in args.run_dirs]
    for folder in targets:
        with folder_lock(folder, "memorization gap"):
            write_text_atomic(folder / "gap_runs.csv", report.runs.to_csv(index=False))
            write_text_atomic(folder / "gap_summary.csv", report.summary.to_csv(index=False))
    cols = ["group_name", "runs", "train_acc", "heldout_acc", "gap", "gap_lo", "gap_hi", "interval"]
    print(f"memorisation gap (train - {args.heldout}), epoch {args.epoch}:")
    print(report.summary[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0
