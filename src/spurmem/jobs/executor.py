"""One interface for running many independent jobs: ``local`` (a process pool) or ``ray``.

A :class:`Job` is a picklable description: a *task* from :data:`spurmem.jobs.tasks.TASKS` (what to
run, and how to tell from its folder whether it is finished), its keyword arguments, a name, the
run folder it writes and its resource request (CPU threads, GPUs). :func:`run_jobs` is the one
driver loop every user shares (``spurmem sweep``, ``compare``, the half-data models of
``memorization examples``)::

    with make_executor("local", workers=2) as executor:
        outcomes = run_jobs(jobs, executor, retries=1, progress=bar)

It skips a job whose folder says it is finished, reports one whose folder is locked by another
live process as ``running elsewhere`` (two drivers sharded over one folder never run a job twice:
each job takes its own folder's lock), retries a failed job ``retries`` times and then reports it
with its error on one line, without stopping the others. An executor only supplies
:meth:`Executor.submit`, :meth:`Executor.wait` and :meth:`Executor.result`.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

from spurmem.config import ConfigError
from spurmem.errors import SpurmemError

Status = Literal["complete", "skipped", "failed", "running elsewhere"]


@dataclass(frozen=True)
class Job:
    """One unit of work. ``task`` names an entry of ``TASKS``; ``kwargs`` must be picklable.
    ``threads``: torch CPU threads in the worker (None: leave the process's setting); ``gpus``: GPUs
    requested from Ray (the local executor ignores it)."""

    name: str
    task: str
    kwargs: dict[str, Any]
    run_dir: Path
    threads: int | None = None
    gpus: float = 0.0


@dataclass(frozen=True)
class Attempt:
    """What one try of a job returned from the worker (exceptions are turned into text there, so an
    error type that does not pickle cannot break the driver)."""

    ok: bool
    value: Any = None
    error: str = ""
    locked: bool = False  # the job's folder was locked by another live process
    seconds: float = 0.0


@dataclass
class JobOutcome:
    """The end state of a job in this driver: ``complete`` (run here), ``skipped`` (finished before),
    ``failed`` (after ``attempts`` tries; ``error`` is the last one) or ``running elsewhere``."""

    job: Job
    status: Status
    attempts: int = 0
    error: str = ""
    seconds: float = 0.0  # time inside the job function (last attempt), as measured in the worker
    value: Any = None

    @property
    def ok(self) -> bool:
        return self.status in ("complete", "skipped")


class JobsFailedError(SpurmemError):
    """Jobs a caller needed (e.g. the ERM runs of a comparison) failed; the message names each."""


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask where the system has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS
        return max(1, os.cpu_count() or 1)


def plan_slots(workers: int | None, threads_per_job: int | None, cores: int | None = None) -> tuple[int, int]:
    """``(workers, threads per job)`` such that workers x threads <= cores when either is left out:
    no workers given -> cores // threads; no threads given -> cores // workers (at least 1 each)."""
    cores = cores or available_cores()
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if threads_per_job is not None and threads_per_job < 1:
        raise ConfigError(f"threads_per_job must be >= 1, got {threads_per_job}")
    threads = threads_per_job or max(1, cores // (workers or cores))
    return (workers or max(1, cores // threads)), threads


class Executor(ABC):
    """Runs submitted jobs, at most :attr:`slots` at once. Use as a context manager."""

    name: str = ""
    slots: int = 1

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @abstractmethod
    def submit(self, job: Job) -> Any:
        """Start ``job``; returns a handle for :meth:`wait` and :meth:`result`."""

    @abstractmethod
    def wait(self, handles: list[Any]) -> list[Any]:
        """Block until at least one of ``handles`` is done; return those done."""

    @abstractmethod
    def result(self, handle: Any) -> Attempt:
        """The :class:`Attempt` of a finished handle (raises when the worker itself died)."""

    def close(self) -> None:
        """Release the workers."""

    def describe(self) -> str:
        return f"{self.name} executor, {self.slots} job(s) at a time"


def run_jobs(jobs: Iterable[Job], executor: Executor, *, retries: int = 0, progress=None,
             log: Callable[[str], None] | None = None) -> list[JobOutcome]:
    """Run ``jobs`` on ``executor``; one :class:`JobOutcome` per job, in the order given.

    ``progress`` (a :class:`~spurmem.progress.Progress`) advances by one per job that ends (run,
    skipped, failed or running elsewhere) with the job's name; ``log`` gets one line per job
    started, skipped, retried, failed or found running elsewhere (default: ``progress.log``)."""
    from spurmem.jobs.tasks import TASKS
    from spurmem.locks import lock_owner

    jobs = list(jobs)
    if retries < 0:
        raise ConfigError(f"retries must be >= 0, got {retries}")
    log = log or (progress.log if progress is not None else (lambda _: None))

    def advance(job: Job, text: str) -> None:
        if progress is not None:
            progress.advance(1, info=f"{job.name} {text}")

    outcomes: dict[int, JobOutcome] = {}
    pending: deque[int] = deque()
    for i, job in enumerate(jobs):
        if TASKS[job.task].status(job.run_dir) == "complete":
            outcomes[i] = JobOutcome(job, "skipped")
            log(f"{job.name}: complete, skipped ({job.run_dir})")
            advance(job, "skipped")
        elif (owner := lock_owner(job.run_dir)) is not None:
            outcomes[i] = JobOutcome(job, "running elsewhere", error=_owner_text(owner))
            log(f"{job.name}: running elsewhere ({_owner_text(owner)}), left to it")
            advance(job, "running elsewhere")
        else:
            pending.append(i)
    attempts = [0] * len(jobs)
    running: dict[Any, int] = {}
    while pending or running:
        while pending and len(running) < executor.slots:
            i = pending.popleft()
            job = jobs[i]
            attempts[i] += 1
            state = TASKS[job.task].status(job.run_dir)
            verb = "resuming" if state == "partial" else TASKS[job.task].verb
            log(f"{job.name}: {verb} -> {job.run_dir}" + (f" (attempt {attempts[i]})" if attempts[i] > 1 else ""))
            running[executor.submit(job)] = i
        for handle in executor.wait(list(running)):
            i = running.pop(handle)
            job = jobs[i]
            try:
                attempt = executor.result(handle)
            except Exception as exc:  # the worker process died or the engine lost it
                from spurmem.errors import one_line

                attempt = Attempt(False, error=f"worker lost: {type(exc).__name__}: {one_line(exc)}")
            if attempt.ok:
                outcomes[i] = JobOutcome(job, "complete", attempts[i], seconds=attempt.seconds, value=attempt.value)
                advance(job, "done")
            elif attempt.locked:
                outcomes[i] = JobOutcome(job, "running elsewhere", attempts[i], attempt.error, attempt.seconds)
                log(f"{job.name}: running elsewhere ({attempt.error}), left to it")
                advance(job, "running elsewhere")
            elif attempts[i] <= retries:
                log(f"{job.name}: failed ({attempt.error}); retrying ({attempts[i]} of {retries + 1} tries used)")
                pending.append(i)
            else:
                outcomes[i] = JobOutcome(job, "failed", attempts[i], attempt.error, attempt.seconds)
                log(f"{job.name}: FAILED after {attempts[i]} tries: {attempt.error}")
                advance(job, "failed")
    return [outcomes[i] for i in range(len(jobs))]


def raise_for_failures(outcomes: list[JobOutcome], what: str) -> None:
    """A :class:`JobsFailedError` naming every job of ``outcomes`` that did not end complete or
    skipped (for callers that cannot go on without them)."""
    bad = [o for o in outcomes if not o.ok]
    if bad:
        detail = "; ".join(f"{o.job.name}: {o.status}" + (f" ({o.error})" if o.error else "") for o in bad)
        raise JobsFailedError(f"{what}: {len(bad)} of {len(outcomes)} job(s) did not finish: {detail}")


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/N"`` -> ``(i, N)`` with 0 <= i < N (None for None)."""
    if text is None:
        return None
    index, sep, count = str(text).partition("/")
    if not (sep and index.strip().isdigit() and count.strip().isdigit()) or not 0 <= int(index) < int(count):
        raise ConfigError(f"shard must be i/N with 0 <= i < N (e.g. 0/4), got {text!r}")
    return int(index), int(count)


def shard(items: list, part: tuple[int, int] | None) -> list:
    """Shard ``i`` of ``N`` of ``items``: every N-th item from the i-th (a deterministic partition of
    the list: the N shards together hold each item exactly once)."""
    if part is None:
        return list(items)
    index, count = part
    return list(items[index::count])


EXECUTORS: dict[str, str] = {  # name -> "module:class"
    "local": "spurmem.jobs.local:LocalExecutor",
    "ray": "spurmem.jobs.ray_executor:RayExecutor",
}


def make_executor(name: str = "local", **options: Any) -> Executor:
    """An executor of :data:`EXECUTORS` by name; ``options`` go to its constructor (``workers``,
    ``threads_per_job``; for ray also ``address``, ``gpus_per_job``)."""
    import importlib

    from spurmem.config import nearest_key

    if name not in EXECUTORS:
        near = nearest_key(name, EXECUTORS)
        raise ConfigError(f"executor: unknown executor {name!r}" + (f"; did you mean {near!r}?" if near else "")
                          + f" Known: {', '.join(EXECUTORS)}")
    module, _, cls = EXECUTORS[name].partition(":")
    return getattr(importlib.import_module(module), cls)(**options)


def _owner_text(owner: dict[str, Any]) -> str:
    return f"locked by pid {owner.get('pid')} on {owner.get('host')}"


__all__ = ["Attempt", "EXECUTORS", "Executor", "Job", "JobOutcome", "JobsFailedError", "available_cores",
           "make_executor", "parse_shard", "plan_slots", "raise_for_failures", "run_jobs", "shard"]
