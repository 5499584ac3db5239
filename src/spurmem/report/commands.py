"""``spurmem report``, ``spurmem runs`` and ``spurmem demo``."""

from __future__ import annotations

import argparse
from pathlib import Path

from spurmem.cli_options import add_common_options


def register(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser(
        "report",
        help="write an HTML report (figures embedded) with CSV and Markdown tables from run directories",
        description="Build a self-contained HTML report from one or more run directories (or folders holding "
        "them): verdicts on the claims first, then per-group training curves, memorisation gaps, probe "
        "curves, the memorisation scan and the algorithm comparison, as far as the runs hold them.",
    )
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories or folders holding them")
    report.add_argument("--out", "-o", default=None,
                        help="output folder (default: RUN_DIR/report for one folder given; for several, "
                        "report-<names> in the folder that holds them all). A default folder that already holds a "
                        "report gets a new timestamped sibling, report-<UTC time>; an --out folder that holds one "
                        "is refused")
    report.add_argument("--overwrite", action="store_true",
                        help="replace the report already in the output folder instead")
    report.add_argument("--title", default="spurmem report", help="title at the top of the report")
    report.set_defaults(func=_report)

    runs = sub.add_parser(
        "runs",
        help="list run directories with their headline metrics",
        description="List every run directory at or below DIR with its status, algorithm, seed, selection rule "
        "and the metrics at the selected epoch (validation and test worst-group accuracy, test average and "
        "adjusted average, largest memorisation gap). A run whose run.json says running but whose process "
        "(its pid on this host, or the owner of its lock) is gone shows as killed; one on another host, or "
        "written before pids were recorded, as unknown.",
    )
    runs.add_argument("dirs", nargs="*", default=["runs"], metavar="DIR", help="folders to search (default: runs)")
    runs.add_argument("--status", default=None, metavar="STATUS",
                      help="only runs with this status: running, killed (its process is gone), unknown (on another "
                      "host, or no pid recorded), complete or failed")
    runs.add_argument("--algorithm", default=None, metavar="NAME", help="only runs of this algorithm")
    runs.add_argument("--sort", default=None, metavar="COLUMN",
                      help="sort by a column of the table, e.g. test_wga, name, seed, started (default: by path)")
    runs.add_argument("--reverse", action="store_true", help="sort in descending order")
    runs.add_argument("--csv", default=None, metavar="FILE", help="also write the table as CSV to FILE")
    runs.add_argument("--tensorboard", default=None, metavar="LOGDIR",
                      help="also export every run's per-epoch metrics to TensorBoard under LOGDIR (needs tensorboard)")
    runs.add_argument("--mlflow", default=None, metavar="URI",
                      help="also export the runs to MLflow at URI, e.g. file:./mlruns or sqlite:///mlflow.db "
                      "(needs mlflow)")
    runs.set_defaults(func=_runs)

    from spurmem.demo import DemoConfig

    settings = "\n".join(f"  {name:<18} {f.description or ''} (default: "
                         f"{f.default_factory() if f.default_factory else f.default})"
                         for name, f in DemoConfig.model_fields.items())
    demo = sub.add_parser(
        "demo",
        help="train, probe, scan and mitigate on the built-in data, then write a report (~5 min on 2 cores)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The whole method in one command on fashion-waterbirds: train ERM, probe it with the random\n"
        "control, scan its units and examples for memorisation, compare the framework with ERM, the\n"
        "erm-continue control and a baseline, and write a report that opens with the verdict on each\n"
        "claim. A second run reuses finished stages.",
        epilog=f"settings (KEY=VALUE):\n{settings}\n\nexamples:\n  spurmem demo\n"
        "  spurmem demo out_dir=runs/demo-s2 seeds=[0,1]\n"
        "  spurmem demo erm_epochs=2 n_train=160 n_eval_per_group=10 fine_tune_epochs=1 example_models=0   # a smoke test",
    )
    demo.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="demo settings (listed below)")
    add_common_options(demo, {}, config_keys={"device": "device", "threads": "threads"})
    demo.add_argument("--fresh", action="store_true",
                      help="delete the demo folder first (by default finished stages are reused; a folder made "
                      "with other settings is refused)")
    demo.set_defaults(func=_demo)


REPORT_FILE = "report.html"


def report_folder(paths: list[str], out: str | None = None, overwrite: bool = False) -> Path:
    """Where ``spurmem report`` writes: ``out``; else ``PATH/report`` for one path, and for several
    ``report-<names>`` in the folder holding them all. An earlier report there is never replaced silently:
    a default folder moves to a timestamped sibling, an explicit ``out`` is an error (unless ``overwrite``)."""
    from datetime import datetime, timezone

    from spurmem.config import ConfigError

    if out is not None:
        folder = Path(out)
        if (folder / REPORT_FILE).exists() and not overwrite:
            raise ConfigError(f"{folder} already holds a report; pass --overwrite to replace it, or another --out")
        return folder
    if len(paths) == 1:
        folder = Path(paths[0]) / "report"
    else:
        import os

        common = Path(os.path.commonpath([Path(p).resolve() for p in paths]))
        names = "+".join(Path(p).resolve().name for p in paths)
        folder = common / f"report-{names[:80]}"
    if overwrite or not (folder / REPORT_FILE).exists():
        return folder
    stamped = folder.with_name(f"{folder.name}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}")
    n = 1
    while stamped.exists():
        n += 1
        stamped = stamped.with_name(f"{folder.name}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{n}")
    return stamped


def _report(args: argparse.Namespace) -> int:
    import sys

    from spurmem.locks import folder_lock
    from spurmem.record import record_command
    from spurmem.report.build import build_report, load_runs
    from spurmem.report.inputs import incomplete_sets

    for path in args.run_dirs:
        if not Path(path).exists():
            raise FileNotFoundError(f"{path}: no such directory")
    out = report_folder(args.run_dirs, args.out, args.overwrite)
    with folder_lock(out, "report"), \
            record_command(out, "report", config={"run_dirs": args.run_dirs, "out": str(out), "title": args.title}):
        for problem in (p for run in load_runs(args.run_dirs) for p in incomplete_sets(run)):
            print(f"spurmem: warning: {problem}; left out of the report", file=sys.stderr)
        path = build_report(args.run_dirs, out, title=args.title, progress=True)
    print(path)
    return 0


def _runs(args: argparse.Namespace) -> int:
    from spurmem.report.console import print_runs_table
    from spurmem.report.runs import runs_table, select_runs

    table = select_runs(runs_table(args.dirs), status=args.status, algorithm=args.algorithm, sort=args.sort,
                        reverse=args.reverse)
    if args.csv:
        from spurmem.locks import writing_into
        from spurmem.record import write_text_atomic

        with writing_into(args.csv, "runs --csv"):
            write_text_atomic(args.csv, table.to_csv(index=False))
    print_runs_table(table)
    if args.tensorboard or args.mlflow:
        return _export(args, list(table["path"]))
    return 0


def _export(args: argparse.Namespace, paths: list[str]) -> int:
    import sys

    from spurmem.report.runs import read_run
    from spurmem.report.tracking import TrackingUnavailable, export_mlflow, export_tensorboard

    runs = [read_run(p) for p in paths]
    try:
        if args.tensorboard:
            print(f"TensorBoard: {export_tensorboard(runs, args.tensorboard)}")
        if args.mlflow:
            print(f"MLflow: {export_mlflow(runs, args.mlflow)}")
    except TrackingUnavailable as exc:
        print(f"spurmem: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _demo(args: argparse.Namespace) -> int:
    from spurmem.config import load_config
    from spurmem.demo import DemoConfig, run_demo
    from spurmem.report.console import print_demo_summary

    config = load_config(DemoConfig, None, args.overrides)
    result = run_demo(config, progress=True, fresh=args.fresh)
    print_demo_summary(result)
    return 0
