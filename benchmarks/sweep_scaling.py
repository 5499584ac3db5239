"""Benchmark: wall time of an 8-job sweep of short runs on 1 vs 2 workers, local and Ray, in one run.

The obvious alternative is the plain loop: the local executor with one worker runs the jobs one
after another in this process. Each sweep trains 8 colored-digits runs (a few seconds each) into a
fresh folder. Printed per executor and worker count: the sweep's wall time, the summed time inside
the jobs (as measured in the workers), the speed-up over the plain loop, and the per-job overhead
= (wall x workers - summed job time) / jobs (worker start-up, dataset loading outside a job,
scheduling, result collection). Ray's own start-up (``ray.init``) is timed apart: a cluster pays
it once, not per sweep.

    .venv/bin/python benchmarks/sweep_scaling.py [--jobs 8] [--epochs 2] [--out /tmp/sweep-scaling]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from spurmem.jobs.sweep import SweepConfig, run_sweep


def sweep(out: Path, executor: str, workers: int, jobs: int, epochs: int) -> SweepConfig:
    base = {"name": "bench", "dataset": "colored-digits", "model_params": {"width": 0.5}, "epochs": epochs,
            "batch_size": 64, "lr": 0.01}
    return SweepConfig(name=f"{executor}-{workers}", out_dir=str(out / f"{executor}-{workers}"), base=base,
                       grid={"seed": list(range(jobs))}, executor=executor, workers=workers, threads_per_job=1,
                       retries=0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=8)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("/tmp/sweep-scaling"))
    p.add_argument("--no-ray", action="store_true")
    args = p.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    import torch

    torch.set_num_threads(1)  # the plain loop runs in this process: one thread per job, as the workers
    plans = [("local", 1), ("local", 2)]
    ray_start = None
    if not args.no_ray:
        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - t0
        plans += [("ray", 1), ("ray", 2)]
    rows = []
    for executor, workers in plans:
        config = sweep(args.out, executor, workers, args.jobs, args.epochs)
        t0 = time.perf_counter()
        result = run_sweep(config, progress=False, log=lambda _: None)
        wall = time.perf_counter() - t0
        assert all(o.status == "complete" for o in result.outcomes), [o.error for o in result.outcomes]
        inside = sum(o.seconds for o in result.outcomes)
        rows.append((executor, workers, wall, inside, (wall * workers - inside) / args.jobs))
    base_wall = rows[0][2]
    print(f"{args.jobs} jobs x {args.epochs} epochs (colored-digits, small-cnn width 0.5), 1 thread per job"
          + (f"; ray.init {ray_start:.1f} s (not counted)" if ray_start is not None else ""))
    print(f"{'executor':>8} {'workers':>7} {'wall s':>7} {'in jobs s':>9} {'speed-up':>8} {'overhead/job s':>14}")
    for executor, workers, wall, inside, overhead in rows:
        print(f"{executor:>8} {workers:>7} {wall:>7.1f} {inside:>9.1f} {base_wall / wall:>7.2f}x {overhead:>14.2f}")
    for name in ("local", "ray"):
        pair = [r for r in rows if r[0] == name]
        if len(pair) == 2:
            print(f"{name}: 2 workers vs 1: {pair[0][2] / pair[1][2]:.2f}x")


if __name__ == "__main__":
    main()
