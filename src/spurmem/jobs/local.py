"""The ``local`` executor: a process pool on this machine, sized so workers x threads <= cores.

With one worker the jobs run one after another in the calling process itself (no pool: the
behaviour, output and results of a plain sequential loop). With more, a
``concurrent.futures.ProcessPoolExecutor`` on the ``forkserver`` start method (``spawn`` where
there is none) runs them; the server imports torch once, so each worker starts in a fraction of a
second. Every job sets torch's threads to ``threads_per_job`` in its worker.
"""

from __future__ import annotations

import multiprocessing
import warnings
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
from concurrent.futures import wait as wait_futures
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from spurmem.jobs.executor import Attempt, Executor, Job, available_cores, plan_slots

PRELOAD = ["torch", "spurmem.jobs.tasks", "spurmem.train.trainer"]  # imported once by the fork server


def start_method() -> str:
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


class LocalExecutor(Executor):
    """``workers`` processes (default: cores // threads_per_job), each job with ``threads_per_job``
    torch threads (default: cores // workers; with one worker and neither given, the caller's own)."""

    name = "local"

    def __init__(self, workers: int | None = None, threads_per_job: int | None = None, **ignored: Any) -> None:
        cores = available_cores()
        if workers == 1 and threads_per_job is None:
            self.slots, self.threads = 1, None  # the calling process's own setting, as a plain loop
        else:
            self.slots, self.threads = plan_slots(workers, threads_per_job, cores)
            if self.slots * self.threads > cores:
                warnings.warn(f"local executor: {self.slots} workers x {self.threads} threads > {cores} cores; "
                              "jobs will compete for the CPU", stacklevel=2)
        self._pool: ProcessPoolExecutor | None = None

    def _job(self, job: Job) -> Job:
        if job.threads is None and self.threads is not None:
            from dataclasses import replace

            return replace(job, threads=self.threads)
        return job

    def _new_pool(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context(start_method())
        if context.get_start_method() == "forkserver":
            context.set_forkserver_preload(PRELOAD)
        return ProcessPoolExecutor(max_workers=self.slots, mp_context=context)

    def submit(self, job: Job) -> Future:
        from spurmem.jobs.tasks import run_job

        job = self._job(job)
        if self.slots == 1:  # in this process
            future: Future = Future()
            future.set_result(run_job(job))
            return future
        if self._pool is None:
            self._pool = self._new_pool()
        try:
            return self._pool.submit(run_job, job)
        except BrokenProcessPool:  # a worker died (killed, out of memory): a fresh pool for the rest
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            return self._pool.submit(run_job, job)

    def wait(self, handles: list[Future]) -> list[Future]:
        done, _ = wait_futures(handles, return_when=FIRST_COMPLETED)
        return [h for h in handles if h in done]

    def result(self, handle: Future) -> Attempt:
        return handle.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def describe(self) -> str:
        if self.slots == 1 and self.threads is None:
            return "local executor, 1 job at a time in this process"
        return f"local executor, {self.slots} worker process(es) x {self.threads} thread(s)"


__all__ = ["LocalExecutor", "start_method"]
