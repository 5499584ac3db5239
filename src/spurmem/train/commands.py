"""``spurmem train`` and ``spurmem eval``."""

from __future__ import annotations

import argparse
from pathlib import Path

from spurmem.cli_options import add_common_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a model (ERM or any registered algorithm) into a run directory",
        description="Train from a YAML TrainConfig plus key=value overrides (dotted keys reach into "
                    "dataset_params, model_params, algorithm_params). Writes runs/<name>/ (or --run-dir): "
                    "config.yaml, run.json, metrics.jsonl, checkpoints/, predictions/.",
        epilog="example: spurmem train --config configs/erm_fashion_waterbirds.yaml epochs=10 dataset_params.rho=0.9",
    )
    p.add_argument("--config", type=Path, help="YAML TrainConfig, or the name of a config shipped with spurmem such as "
                   "erm_fashion_waterbirds (defaults: the docs/method.md §9 reference recipe)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. lr=0.01 seed=1")
    p.add_argument("--run-dir", type=Path, help="run directory (default: runs/<name>)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="continue an existing run from its last complete epoch (config from its config.yaml "
                           "when --config is not given)")
    mode.add_argument("--overwrite", action="store_true", help="delete an existing run directory and start over")
    p.add_argument("--print-config", action="store_true",
                   help="check the config (algorithm, dataset and model parameters included), print it as YAML "
                        "and exit")
    add_common_options(p, {}, config_keys={"device": "device", "seed": "seed", "threads": "threads"})
    p.set_defaults(func=_train)

    e = sub.add_parser(
        "eval", help="evaluate a run's checkpoint per split and group",
        description="Per-split, per-group accuracy with counts and mean logit margins, the named averages "
                    "(worst-group, plain average, adjusted average with training proportions, balanced, "
                    "worst-class) and the per-group memorisation gap (train minus held-out).",
    )
    e.add_argument("run_dir", type=Path, help="a run directory written by `spurmem train`")
    e.add_argument("--splits", nargs="+", default=["train", "val", "test"], help="splits to evaluate")
    add_common_options(e, {"epoch": "selected", "device": "auto", "threads": 0})
    e.add_argument("--csv", type=Path, help="also write the tidy per-group table to this CSV file")
    e.set_defaults(func=_eval)


def _train(args: argparse.Namespace) -> int:
    from spurmem.config import ConfigError, load_config
    from spurmem.train import TrainConfig, train
    from spurmem.train.distributed import is_main_process
    from spurmem.train.run import CONFIG_FILE, is_half_made, recorded_config

    config_path = args.config
    config = None
    if config_path is None and args.resume:
        if args.run_dir is None:
            raise ConfigError("--resume without --config needs --run-dir (the run to continue)")
        config_path = args.run_dir / CONFIG_FILE
        if not config_path.is_file() and is_half_made(args.run_dir):  # killed before its config.yaml
            config_path = None
            config = None if args.overrides else recorded_config(args.run_dir)
    if config is None:
        config = load_config(TrainConfig, config_path, args.overrides)
    if args.print_config:
        from spurmem.config import dump_config
        from spurmem.train.config_checks import check_config

        check_config(config)
        print(dump_config(config), end="")
        return 0
    result = train(config, run_dir=args.run_dir, resume=args.resume, overwrite=args.overwrite,
                   progress=True)
    if not is_main_process():  # under torchrun: rank 0 prints the summary
        return 0
    row = result.row()
    sel = result.selection
    value = "" if sel.value is None else f" ({sel.metric} = {100 * sel.value:.1f})"
    print(f"run: {result.run_dir}   selected epoch {sel.epoch} by {sel.rule}{value}   {result.seconds:.0f} s")
    for split in ("train", "val", "test"):
        if f"{split}/worst_group_accuracy" in row:
            accs = " ".join(f"{100 * row[f'{split}/acc_g{g}']:5.1f}" for g in range(len(row["groups"][split])))
            print(f"  {split:<5} WGA {100 * row[f'{split}/worst_group_accuracy']:5.1f}  "
                  f"avg {100 * row[f'{split}/average']:5.1f}  groups {accs}")
    return 0


AVERAGE_NAMES = {
    "worst_group_accuracy": "worst-group accuracy",
    "average": "average (plain)",
    "adjusted_average": "adjusted average (train proportions)",
    "balanced_accuracy": "balanced accuracy (mean over groups)",
    "worst_class_accuracy": "worst-class accuracy",
}


def _eval(args: argparse.Namespace) -> int:
    import sys

    from rich.console import Console
    from rich.table import Table

    from spurmem.metrics import evaluate, memorization_gap_table, metrics_table
    from spurmem.record import write_text_atomic
    from spurmem.train import load_run

    epoch = args.epoch
    run = load_run(args.run_dir, epoch=epoch, device=args.device)
    results = evaluate(run.model, run.dataset, args.splits, device=args.device)
    console = Console() if sys.stdout.isatty() else Console(width=140)
    sel = run.info.get("selection") or {}
    console.print(f"[bold]{args.run_dir}[/bold]  epoch {run.epoch}"
                  + (f"  (selected by {sel.get('rule')})" if epoch == "selected" else ""))
    minority = set(run.dataset.minority_groups)
    for split, m in results.items():
        table = Table(title=f"{split}: accuracy per group", title_justify="left")
        for col in ("group", "name", "role", "correct", "count", "accuracy %", "mean margin"):
            table.add_column(col, justify="left" if col in ("name", "role") else "right")
        for g in m.groups:
            table.add_row(str(g.group), g.name, "minority" if g.group in minority else "majority", str(g.correct),
                          str(g.count), f"{100 * g.accuracy:.1f}", f"{g.mean_margin:.3f}")
        console.print(table)
    averages = Table(title="averages (%)", title_justify="left")
    averages.add_column("average")
    for split in results:
        averages.add_column(split, justify="right")
    for key, label in AVERAGE_NAMES.items():
        averages.add_row(label, *(f"{100 * getattr(m, key):.1f}" for m in results.values()))
    console.print(averages)
    heldout = "test" if "test" in results else ("val" if "val" in results else None)
    if "train" in results and heldout:
        gaps = Table(title=f"memorisation gap (train minus {heldout}, points)", title_justify="left")
        for col in ("group", "name", "role", "train %", f"{heldout} %", "gap"):
            gaps.add_column(col, justify="left" if col in ("name", "role") else "right")
        for r in memorization_gap_table(results["train"], results[heldout], run.dataset).itertuples():
            gaps.add_row(str(r.group), r.group_name, r.role, f"{100 * r.train_accuracy:.1f}",
                         f"{100 * r.heldout_accuracy:.1f}", f"{100 * r.gap:+.1f}")
        console.print(gaps)
    if args.csv:
        from spurmem.locks import writing_into

        with writing_into(args.csv, "eval --csv"):
            write_text_atomic(args.csv, metrics_table(results).assign(epoch=run.epoch).to_csv(index=False))
    return 0
