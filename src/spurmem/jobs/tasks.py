"""What a :class:`~spurmem.jobs.executor.Job` can run: the :data:`TASKS` registry, and
:func:`run_job`, the function every worker (local process, Ray task, or the driver itself) calls.

A task is a function run as ``run(**job.kwargs)`` and a ``status(run_dir)`` that says from the
job's folder whether it is ``complete`` (skipped on a re-run), ``partial`` (resumed) or ``new``.
Workers load datasets through :func:`job_dataset`, which keeps the last few in the process, so a
worker that runs several jobs on one dataset builds it once; a driver that runs jobs in its own
process (the local executor with one worker) lends its own loaded dataset with :func:`shared_dataset`.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from spurmem.jobs.executor import Attempt, Job

_DATASETS: "OrderedDict[str, Any]" = OrderedDict()  # key -> GroupDataset, most recently used last
_KEEP_DATASETS = 2


def _dataset_key(name: str, params: dict[str, Any]) -> str:
    return json.dumps([name, params], sort_keys=True, default=str)


def job_dataset(name: str, params: dict[str, Any]):
    """``load_dataset(name, **params)``, kept for the next job of this process (at most two kept)."""
    from spurmem.data import load_dataset

    key = _dataset_key(name, params)
    if key not in _DATASETS:
        _DATASETS[key] = load_dataset(name, **params)
        while len(_DATASETS) > _KEEP_DATASETS:
            _DATASETS.popitem(last=False)
    _DATASETS.move_to_end(key)
    return _DATASETS[key]


@contextmanager
def shared_dataset(name: str, params: dict[str, Any], dataset) -> Iterator[None]:
    """Jobs run in this process use ``dataset`` (already loaded by the caller, built from ``name``
    and ``params``) for the duration of the block, instead of loading their own."""
    key = _dataset_key(name, params)
    before = _DATASETS.get(key)
    _DATASETS[key] = dataset
    try:
        yield
    finally:
        if before is None:
            _DATASETS.pop(key, None)
        else:
            _DATASETS[key] = before


def train_run(config: dict[str, Any], run_dir: str, progress: bool = False,
              train_indices: list[int] | None = None) -> dict[str, Any]:
    """Train (or resume) the :class:`~spurmem.train.TrainConfig` ``config`` into ``run_dir``;
    ``train_indices`` keeps only those training examples (the half-data models of
    ``memorization examples``). Returns the run's selection."""
    from spurmem.config import validate_config
    from spurmem.train import TrainConfig, train
    from spurmem.train.run import run_status

    cfg = validate_config(TrainConfig, config, source=f"job config of {run_dir}")
    dataset = job_dataset(cfg.dataset, cfg.dataset_params)
    if train_indices is not None:
        import numpy as np

        from spurmem.memorization.examples import half_dataset

        dataset = half_dataset(dataset, np.asarray(train_indices, dtype=np.int64))
    result = train(cfg, run_dir=run_dir, resume=run_status(run_dir) != "new", progress=progress, dataset=dataset)
    return {"selection": result.selection.to_dict(), "seconds": result.seconds}


def compare_run(config: dict[str, Any], run_dir: str, progress: bool = False) -> dict[str, Any]:
    """Run the :class:`~spurmem.train.compare.CompareConfig` ``config`` (its runs one after another
    in this worker, unless it names an executor of its own) into ``run_dir`` and write its tables."""
    from spurmem.config import validate_config
    from spurmem.train.compare import CompareConfig, run_compare
    from spurmem.train.compare_table import write_comparison

    cmp = validate_config(CompareConfig, {**config, "out_dir": run_dir}, source=f"job config of {run_dir}")
    _, paths = write_comparison(run_compare(cmp, progress=progress, log=lambda _: None))
    return {"written": [str(p) for p in paths.values()]}


def probe_job(config: dict[str, Any], run_dir: str, progress: bool = False) -> dict[str, Any]:
    """Probe the training run ``run_dir`` with the :class:`~spurmem.probes.config.ProbeConfig`
    ``config`` into ``run_dir/probes/<name>`` (``spurmem probe``'s own code, which holds that folder's
    lock and resumes its finished settings)."""
    from spurmem.config import validate_config
    from spurmem.probes.api import probe_run
    from spurmem.probes.config import ProbeConfig

    import torch

    cfg = validate_config(ProbeConfig, config, source=f"job config of a probe of {run_dir}")
    result = probe_run(run_dir, cfg, progress=progress)
    return {"out_dir": str(result.out_dir), "settings_computed": result.n_computed,
            "settings_resumed": result.n_resumed, "seconds": result.seconds, "threads": torch.get_num_threads()}


def _probe_status(folder: Path) -> str:
    from spurmem.jobs.probe_sweep import probe_status

    return probe_status(folder)


def _compare_status(run_dir: Path) -> str:
    """``complete`` once comparison.json is written (the tables come last), else as a folder."""
    run_dir = Path(run_dir)
    if (run_dir / "comparison.json").is_file():
        return "complete"
    return "partial" if run_dir.is_dir() and any(run_dir.iterdir()) else "new"


def _train_status(run_dir: Path) -> str:
    from spurmem.train.run import run_status

    return run_status(run_dir)


@dataclass(frozen=True)
class Task:
    run: Callable[..., Any]
    status: Callable[[Path], str]
    verb: str = "training"  # what the driver's log says a started job is doing


TASKS: dict[str, Task] = {
    "train": Task(run=train_run, status=_train_status),
    "compare": Task(run=compare_run, status=_compare_status),
    "probe": Task(run=probe_job, status=_probe_status, verb="probing"),
}


def run_job(job: Job) -> Attempt:
    """Run one job here and say how it went; never raises for the job's own errors. ``job.threads``
    sets torch's CPU threads for the job (restored after)."""
    from spurmem.errors import RunLockedError
    from spurmem.errors import one_line

    start = time.perf_counter()
    threads_before = None
    if job.threads:
        import torch

        threads_before = torch.get_num_threads()
        torch.set_num_threads(job.threads)
    try:
        value = TASKS[job.task].run(**job.kwargs)
        return Attempt(True, value, seconds=time.perf_counter() - start)
    except RunLockedError as exc:
        return Attempt(False, error=one_line(exc), locked=True, seconds=time.perf_counter() - start)
    except Exception as exc:
        return Attempt(False, error=f"{type(exc).__name__}: {one_line(exc)}", seconds=time.perf_counter() - start)
    finally:
        if threads_before is not None:
            import torch

            torch.set_num_threads(threads_before)


__all__ = ["TASKS", "Task", "compare_run", "job_dataset", "probe_job", "run_job", "shared_dataset", "train_run"]
