"""``spurmem memorization {units,examples,gap}``: memorisation per unit, per example and per group.

Outputs go to ``RUN_DIR/memorization/`` (tidy CSVs, a JSON summary, PNG figures). ``units`` and
``examples`` each write their files as one set (``spurmem.fileset``: ``units.manifest.json`` /
``examples.manifest.json`` last) while holding the folder's lock (``spurmem.locks``); every command
leaves an experiment record in ``RUN_DIR/records/``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from spurmem.cli_options import add_common_options

OUT_DIR = "memorization"  # also spurmem.memorization.stage.OUT_DIR


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
    e.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="where the half-data models train (docs/scale.md; default local)")
    e.add_argument("--parallel", type=int, default=1, metavar="N",
                   help="half-data models trained at a time (default 1: one after another in this process)")
    e.add_argument("--ray-address", metavar="ADDRESS", help="--executor ray: 'auto' or ray://HOST:PORT of a running "
                   "cluster (default: a Ray instance started here)")
    add_common_options(e, {"epoch": "last", "seed": 0, "device": "auto", "threads": 0},
                       helps={"epoch": "checkpoint of each half model to evaluate", "seed": "seed of the random halves"})
    e.set_defaults(func=_examples)

    g = actions.add_parser(
        "gap", help="train vs held-out accuracy per group, with CIs over runs",
        description="The memorisation gap acc_g(train) - acc_g(held-out) per group at the chosen epoch; one run "
                    "gives 95% Newcombe score intervals (never zero width at 0% or 100% accuracy), several "
                    "runs (seeds) a t-interval over runs (Newcombe on the pooled counts when the runs' gaps are "
                    "identical, where a t-interval would have zero width).",
        epilog="outputs: RUN_DIR/memorization/gap_runs.csv and gap_summary.csv for every RUN_DIR given "
               "(or --out DIR)\n\nexample:\n  spurmem memorization gap runs/erm-seed0 runs/erm-seed1")
    g.add_argument("run_dirs", type=Path, nargs="+")
    g.add_argument("--heldout", default="test", choices=("test", "val"))
    g.add_argument("--out", type=Path, default=None, help="write the tables here instead of each run's folder")
    add_common_options(g, {"epoch": "selected"})
    g.set_defaults(func=_gap)


def _units(args: argparse.Namespace) -> int:
    from spurmem.memorization.stage import scan_run_units
    from spurmem.probes.scan import Screen

    screen = Screen(factor=args.screen_factor, calibration=args.calibration, audit_units=args.audit_units,
                    seed=args.seed) if args.screen else None
    result, out = scan_run_units(args.run_dir, epoch=args.epoch, heldout=args.heldout, intervention=args.intervention,
                                 null_draws=args.null_draws, seed=args.seed, device=args.device, screen=screen,
                                 layers=args.layers, examples_per_group=args.examples_per_group, out=args.out)
    s = result.summary
    print(f"unit memorisation, {s['units']} units, minority gap {s['base_minority_gap']:+.3f} "
          f"(train {s['base_minority_train_acc']:.3f}, {s['heldout_split']} {s['base_minority_heldout_acc']:.3f})")
    print(f"  {s['statement']}")
    print(result.layers[["layer", "units", "positive_score", "share", "uniform_share"]].to_string(index=False))
    print(f"  -> {out}")
    return 0


def _examples(args: argparse.Namespace) -> int:
    from spurmem.config import parse_override
    from spurmem.memorization.stage import score_run_examples

    overrides = dict(parse_override(item) for item in args.overrides)
    result, out = score_run_examples(args.run_dir, overrides, models=args.models, flip_k=args.flip_k, epoch=args.epoch,
                                     seed=args.seed, device=args.device, executor=args.executor,
                                     parallel=args.parallel, ray_address=args.ray_address)
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
