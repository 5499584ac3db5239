"""The ``ray`` executor: jobs as Ray tasks, on a cluster (``address="auto"`` or ``ray://HOST:10001``)
or on a Ray instance started here (``address=None``: ``ray.init(num_cpus=workers x threads)``).

Ray is an optional extra (``pip install 'spurmem[ray]'``), imported only when this executor is made.
Each job asks Ray for ``num_cpus`` = its threads and ``num_gpus`` = ``gpus_per_job``; Ray's own task
retries are off (the driver retries, :func:`~spurmem.jobs.executor.run_jobs`). spurmem must be
importable on every node (installed, or on the workers' ``PYTHONPATH``). A Ray instance this
executor started is shut down on close; one that was already running (``ray.is_initialized()``) is
left alone.
"""

from __future__ import annotations

from typing import Any

from spurmem.config import ConfigError
from spurmem.jobs.executor import Attempt, Executor, Job, plan_slots


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("executor=ray needs Ray, which is not installed: pip install 'spurmem[ray]' "
                          "(or use executor=local)") from None
    return ray


class RayExecutor(Executor):
    """``workers`` jobs at a time (default: the cluster's CPUs // threads_per_job)."""

    name = "ray"

    def __init__(self, workers: int | None = None, threads_per_job: int | None = None, address: str | None = None,
                 gpus_per_job: float = 0.0, **ignored: Any) -> None:
        ray = self._ray = import_ray()
        self._started = False
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                slots, threads = plan_slots(workers, threads_per_job)
                ray.init(num_cpus=slots * threads, include_dashboard=False, log_to_driver=False)
            self._started = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        threads = threads_per_job or (max(1, cpus // workers) if workers else 1)
        self.threads = threads
        self.slots = workers or max(1, cpus // threads)
        self.gpus = float(gpus_per_job)
        from spurmem.jobs.tasks import run_job

        self._remote = ray.remote(max_retries=0)(run_job)

    def submit(self, job: Job) -> Any:
        threads = job.threads or self.threads
        if job.threads is None:
            from dataclasses import replace

            job = replace(job, threads=threads)
        return self._remote.options(num_cpus=threads, num_gpus=job.gpus or self.gpus).remote(job)

    def wait(self, handles: list[Any]) -> list[Any]:
        ready, _ = self._ray.wait(handles, num_returns=1)
        return ready

    def result(self, handle: Any) -> Attempt:
        return self._ray.get(handle)

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False

    def describe(self) -> str:
        return f"ray executor, up to {self.slots} job(s) at a time x {self.threads} CPU(s)" + (
            f" + {self.gpus:g} GPU(s)" if self.gpus else "")


__all__ = ["RayExecutor", "import_ray"]
