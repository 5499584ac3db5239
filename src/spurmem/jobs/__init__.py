"""Many independent jobs on one executor interface: ``local`` (a process pool) or ``ray``
(:mod:`spurmem.jobs.executor`), and ``spurmem sweep`` (:mod:`spurmem.jobs.sweep`), a grid or
seeded random search over a base config run through it. See docs/scale.md."""

from __future__ import annotations

from spurmem.lazy import lazy_exports

_EXPORTS = {
    "EXECUTORS": "spurmem.jobs.executor",
    "Executor": "spurmem.jobs.executor",
    "Job": "spurmem.jobs.executor",
    "JobOutcome": "spurmem.jobs.executor",
    "JobsFailedError": "spurmem.jobs.executor",
    "make_executor": "spurmem.jobs.executor",
    "run_jobs": "spurmem.jobs.executor",
    "TASKS": "spurmem.jobs.tasks",
    "SweepConfig": "spurmem.jobs.sweep",
    "SweepResult": "spurmem.jobs.sweep",
    "run_sweep": "spurmem.jobs.sweep",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
