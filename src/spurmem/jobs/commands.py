"""``spurmem sweep``."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "sweep", help="run a grid or random search over a train, compare or probe config as parallel jobs (local "
             "processes or Ray)",
        description="Run every cell of SWEEP.yaml's grid (dotted key -> list of values; the cartesian product) "
                    "and/or its seeded random search (random.trials draws of random.params, each a log_uniform, "
                    "uniform, int_uniform or choice) over the base TrainConfig, one run per job in "
                    "<out>/runs/<name>-<hash>, on the local executor (a process pool; workers x threads_per_job "
                    "<= cores) or on Ray (executor=ray; ray_address=auto for a running cluster). Finished runs are "
                    "skipped, interrupted ones resumed, a failed job retried `retries` times and then reported "
                    "without stopping the others. Writes <out>/results.csv (one row per job: varied settings, "
                    "status, selected epoch and rule, val/test WGA, average accuracy) and <out>/summary.md. "
                    "Exit status 1 when a job failed. With kind=probe the base is a ProbeConfig and each job one probe "
                    "of one of `runs` (trained run folders, a list or a glob) in <run>/probes/<name>-<hash>, skipped "
                    "once complete; results.csv then has each probe's claim verdicts and outcome counts. "
                    "Keys: name, out_dir, kind (train; compare: each job a whole comparison; probe), base, "
                    "train (TrainConfig fields for every job), runs (kind probe), grid, random.trials, random.seed, "
                    "random.params, executor, workers, threads_per_job, gpus_per_job, retries, ray_address.",
        epilog="example: spurmem sweep sweep.yaml --workers 2 retries=0   (docs/scale.md)",
    )
    s.add_argument("sweep", type=Path, help="the sweep YAML file")
    s.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="sweep overrides, e.g. workers=4 retries=0")
    s.add_argument("--executor", choices=["local", "ray"], help="same as executor=NAME (default: the file's, local)")
    s.add_argument("--workers", type=int, metavar="N", help="jobs at a time; same as workers=N")
    s.add_argument("--shard", metavar="I/N", help="run only shard I of N (every N-th job from the I-th; I from 0), "
                   "e.g. one per array task of a cluster without Ray; tables go to <out>/shards/I-of-N/")
    mode = s.add_mutually_exclusive_group()
    mode.add_argument("--collect", action="store_true",
                      help="run nothing: build <out>/results.csv and summary.md of every job from its folder "
                           "(after the shards are done)")
    mode.add_argument("--dry-run", action="store_true", help="list the jobs, their folders and status, and exit")
    s.set_defaults(func=_sweep)


def _sweep(args: argparse.Namespace) -> int:
    from spurmem.jobs.executor import parse_shard
    from spurmem.jobs.sweep import collect_sweep, load_sweep, plan_sweep, run_sweep

    overrides = list(args.overrides)
    overrides += [f"executor={args.executor}"] if args.executor else []
    overrides += [f"workers={args.workers}"] if args.workers is not None else []
    sweep, relative_to = load_sweep(args.sweep, overrides)
    part = parse_shard(args.shard)
    if args.dry_run:
        from spurmem.jobs.executor import shard
        from spurmem.jobs.tasks import TASKS

        jobs = shard(plan_sweep(sweep, relative_to), part)
        width = max((len(j.label) for j in jobs), default=0)
        for j in jobs:
            print(f"{j.label:<{width}}  {TASKS[j.kind].status(j.run_dir):<8} {j.run_dir}")
        return 0
    if args.collect:
        result = collect_sweep(sweep, relative_to)
    else:
        result = run_sweep(sweep, relative_to, part, progress=True,
                           log=lambda msg: print(f"[sweep] {msg}", flush=True))
    counts = result.table["status"].value_counts().to_dict()
    print(f"sweep {sweep.name}: {len(result.table)} jobs: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    print("written: " + ", ".join(str(p) for p in result.written.values()))
    failed = int((result.table["status"] == "failed").sum())
    if failed:
        print(f"sweep {sweep.name}: {failed} of {len(result.table)} jobs failed (see {result.written['summary']})")
    return 1 if failed else 0
