"""``spurmem sweep``: a base train config, a grid and/or a seeded random search over its keys, run
as independent jobs on an executor (:mod:`spurmem.jobs.executor`), collected into one table.

::

    name: lr-seeds
    base: erm_colored_digits            # a TrainConfig file (or shipped config name), or the fields inline
    train: {device: cpu}                # set on the base for every job
    grid: {seed: [0, 1, 2], lr: [1e-3, 3e-4]}           # dotted keys -> values; the cartesian product
    random: {trials: 4, seed: 0, params: {weight_decay: {log_uniform: [1e-5, 1e-2]}}}
    executor: local                     # or ray (pip install 'spurmem[ray]')
    workers: 2
    retries: 1

Every grid cell x random trial is one run in ``<out>/runs/<base name>-<config hash>`` (with ``kind:
compare`` the base is a CompareConfig and each job a whole comparison in that folder, one row per
algorithm in the table, means over its seeds). A finished run
(run.json ``complete``) is skipped on a re-run, an interrupted one resumed, a failed one retried
``retries`` times and then reported with its error; each job's outcome is kept in
``<out>/jobs/<run name>.json``. At the end ``<out>/results.csv`` (one row per job: its varied
settings, status, selected epoch and rule, val/test WGA and average accuracy) and ``<out>/summary.md``
are written atomically. ``--shard i/N`` runs every N-th job from the i-th (a cluster without Ray:
one array task per shard, each writing ``<out>/shards/i-of-N/``); ``--collect`` builds the
table of all jobs from their folders afterwards.

With ``kind: probe`` the base is a ProbeConfig, ``runs`` names trained run folders (a list or a glob)
and each job is one probe of one run, written to ``<run>/probes/<name>-<hash>``
(:mod:`spurmem.jobs.probe_sweep`).
"""

from __future__ import annotations

import copy
import itertools
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from spurmem.config import ConfigError, config_hash, find_config, read_yaml_mapping, set_dotted, validate_config
from spurmem.jobs.executor import Job, JobOutcome, make_executor, run_jobs, shard
from spurmem.progress import Progress

JOBS_DIR = "jobs"
RUNS_DIR = "runs"
SHARDS_DIR = "shards"
RESULTS_FILE = "results.csv"
SUMMARY_FILE = "summary.md"


class Distribution(BaseModel):
    """One of ``log_uniform: [low, high]``, ``uniform: [low, high]``, ``int_uniform: [low, high]``
    (both ends included) or ``choice: [values]``."""

    model_config = ConfigDict(extra="forbid")

    log_uniform: tuple[float, float] | None = None
    uniform: tuple[float, float] | None = None
    int_uniform: tuple[int, int] | None = None
    choice: list[Any] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one(self) -> "Distribution":
        given = [k for k in type(self).model_fields if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of log_uniform, uniform, int_uniform, choice"
                             + (f" (got {', '.join(given)})" if given else ""))
        low_high = self.log_uniform or self.uniform or self.int_uniform
        if low_high is not None and low_high[0] > low_high[1]:
            raise ValueError(f"{given[0]}: low {low_high[0]} > high {low_high[1]}")
        if self.log_uniform is not None and self.log_uniform[0] <= 0:
            raise ValueError("log_uniform: both ends must be > 0")
        return self

    def draw(self, rng: random.Random) -> Any:
        if self.log_uniform is not None:
            low, high = self.log_uniform
            return float(math.exp(rng.uniform(math.log(low), math.log(high))))
        if self.uniform is not None:
            return float(rng.uniform(*self.uniform))
        if self.int_uniform is not None:
            return rng.randint(*self.int_uniform)
        return copy.deepcopy(rng.choice(self.choice))


class RandomSearch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trials: int = Field(..., ge=1, description="random draws (each combined with every grid cell)")
    seed: int = Field(0, description="the draws are a function of this seed")
    params: dict[str, Distribution] = Field(..., min_length=1, description="dotted key -> distribution")


class SweepConfig(BaseModel):
    """A sweep: runs of ``base`` with the keys of ``grid`` and ``random`` varied."""

    model_config = ConfigDict(extra="forbid")

    name: str = "sweep"
    out_dir: str | None = Field(None, description="default runs/<name>")
    kind: Literal["train", "compare", "probe"] = Field(
        "train", description="what base is: a TrainConfig (each job one run), a CompareConfig (each job a whole "
        "comparison) or a ProbeConfig (each job one probe of one of runs)")
    base: str | dict[str, Any] = Field(default_factory=dict, description="a TrainConfig (CompareConfig, ProbeConfig) "
                                       "YAML file (relative to the sweep file, or the name of a shipped config) or its "
                                       "fields inline")
    runs: str | list[str] | None = Field(None, description="kind probe: the trained run folders to probe, a list or "
                                         "a glob such as runs/erm-*-s* (relative to the working directory)")
    train: dict[str, Any] = Field(default_factory=dict, description="TrainConfig fields (dotted keys) set on the base "
                                  "for every job, e.g. {device: cuda}")
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="dotted key -> values (cartesian product)")
    random: RandomSearch | None = None
    executor: Literal["local", "ray"] = "local"
    workers: int | None = Field(None, ge=1, description="jobs at a time (default: cores // threads_per_job)")
    threads_per_job: int | None = Field(None, ge=1, description="torch threads of each job (default: cores // workers)")
    gpus_per_job: float = Field(0.0, ge=0, description="GPUs Ray reserves for each job")
    retries: int = Field(1, ge=0, description="tries after the first for a failed job")
    ray_address: str | None = Field(None, description="executor=ray: 'auto' or ray://HOST:PORT of a running cluster "
                                                     "(default: a Ray instance started here)")

    @model_validator(mode="after")
    def _keys(self) -> "SweepConfig":
        for key, values in self.grid.items():
            if not values:
                raise ValueError(f"grid.{key}: give at least one value")
        both = set(self.grid) & set(self.random.params if self.random else {})
        if both:
            raise ValueError(f"keys {sorted(both)} are in both grid and random.params")
        if self.kind == "probe" and self.train:
            raise ValueError("train: sets TrainConfig fields, so it is for kind train or compare; with kind probe "
                             "put the probe keys in base")
        if self.kind == "probe" and not self.runs:
            raise ValueError("kind probe needs runs: a list of trained run folders or a glob such as runs/erm-*")
        if self.kind != "probe" and self.runs:
            raise ValueError(f"runs: only for kind probe (kind is {self.kind}: each job trains its own run)")
        return self

    @property
    def output(self) -> Path:
        return Path(self.out_dir) if self.out_dir else Path("runs") / self.name


@dataclass
class SweepJob:
    """One job of the sweep: its varied ``settings``, the resolved config (TrainConfig, CompareConfig
    or ProbeConfig) and the folder it writes. A probe job also names the trained ``run`` it probes
    (``run_dir`` is then the probe folder) and its ``record`` name (unique in the sweep)."""

    settings: dict[str, Any]
    config: Any
    run_dir: Path
    kind: str = "train"
    run: Path | None = None
    record: str | None = None

    @property
    def label(self) -> str:
        return " ".join(f"{k}={short_value(v)}" for k, v in self.settings.items()) or "base"

    @property
    def record_name(self) -> str:
        """The job's record file name (without .json) in ``<out>/jobs/``."""
        return self.record or self.run_dir.name

    def job(self, progress: bool = False) -> Job:
        target = self.run if self.run is not None else self.run_dir
        name = self.label if self.run is None else f"{self.run.name} {self.label}"
        return Job(name, self.kind, {"config": self.config.model_dump(mode="json"), "run_dir": str(target),
                                     "progress": progress}, self.run_dir)


@dataclass
class SweepResult:
    config: SweepConfig
    jobs: list[SweepJob]
    outcomes: list[JobOutcome] = field(default_factory=list)
    table: Any = None  # pandas DataFrame (results.csv)
    written: dict[str, Path] = field(default_factory=dict)

    @property
    def failed(self) -> list[JobOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


def load_sweep(path: str | Path | None, overrides: list[str] = ()) -> tuple[SweepConfig, Path | None]:
    """The sweep file plus ``key=value`` overrides, and the folder relative paths in it start from."""
    from spurmem.config import load_config

    config = load_config(SweepConfig, path, list(overrides))
    return config, (Path(path).parent if path is not None else None)


def base_data(sweep: SweepConfig, relative_to: Path | None = None) -> tuple[dict[str, Any], str]:
    """The base TrainConfig fields and where they came from."""
    if isinstance(sweep.base, dict):
        return copy.deepcopy(sweep.base), "base (inline)"
    candidate = (relative_to / sweep.base) if relative_to is not None else None
    path = candidate if candidate is not None and candidate.is_file() else find_config(sweep.base)
    data, _ = read_yaml_mapping(path)
    return data, str(path)


COMPARE_HASH_EXCLUDE = ("name", "out_dir", "executor", "workers", "threads_per_job", "ray_address")


def base_model(kind: str) -> tuple[type[BaseModel], tuple[str, ...]]:
    """The config model of a sweep's base and the fields that do not change a job's results."""
    if kind == "compare":
        from spurmem.train.compare import CompareConfig

        return CompareConfig, COMPARE_HASH_EXCLUDE
    from spurmem.train.config import HASH_EXCLUDE, TrainConfig

    return TrainConfig, HASH_EXCLUDE


def cells(sweep: SweepConfig) -> list[dict[str, Any]]:
    """The varied settings of every job: each grid cell (in the grid's key order, the last key
    fastest) with each random trial (drawn in order from ``random.seed``)."""
    grid = [dict(zip(sweep.grid, values)) for values in itertools.product(*sweep.grid.values())] or [{}]
    if sweep.random is None:
        return grid
    rng = random.Random(sweep.random.seed)
    draws = [{k: d.draw(rng) for k, d in sweep.random.params.items()} for _ in range(sweep.random.trials)]
    return [{**g, **d} for g in grid for d in draws]


def plan_sweep(sweep: SweepConfig, relative_to: Path | None = None) -> list[SweepJob]:
    """Every job of the sweep with its validated TrainConfig and run folder; a grid cell that is not a
    valid TrainConfig, or two cells that make the same run, is a ConfigError naming them (``kind:
    probe``: :func:`spurmem.jobs.probe_sweep.plan_probe_sweep`)."""
    if sweep.kind == "probe":
        from spurmem.jobs.probe_sweep import plan_probe_sweep

        return plan_probe_sweep(sweep, relative_to)
    model_cls, exclude = base_model(sweep.kind)
    base, source = base_data(sweep, relative_to)
    jobs: list[SweepJob] = []
    seen: dict[Path, str] = {}
    for settings in cells(sweep):
        data = copy.deepcopy(base)
        origins = {}
        for key, value in sweep.train.items():
            set_dotted(data, key, copy.deepcopy(value), f"sweep train.{key}")
            origins[tuple(key.split("."))] = f"sweep train.{key}"
        for key, value in settings.items():
            set_dotted(data, key, value, f"sweep key {key}")
            origins[tuple(key.split("."))] = f"sweep setting {key}={short_value(value)}"
        config = validate_config(model_cls, data, source=source, origins=origins)
        name = f"{config.name}-{config_hash(config, exclude)[:8]}"
        run_dir = sweep.output / RUNS_DIR / name
        config = config.model_copy(update={"name": name, **({"out_dir": str(run_dir)} if sweep.kind == "compare" else {})})
        job = SweepJob(settings, config, run_dir, sweep.kind)
        if job.run_dir in seen:
            raise ConfigError(f"sweep {sweep.name}: {seen[job.run_dir]!r} and {job.label!r} make the same run "
                              f"(the keys {', '.join(exclude)} do not change a run)")
        seen[job.run_dir] = job.label
        jobs.append(job)
    return jobs


def run_sweep(sweep: SweepConfig, relative_to: Path | None = None, part: tuple[int, int] | None = None,
              progress: bool = True, log=None) -> SweepResult:
    """Run the jobs of the sweep (shard ``part`` = (i, N) of them, or all) and write the tables.

    The driver holds the lock of the sweep folder (of ``shards/i-of-N`` for a shard, so the shards
    of one sweep run side by side); each job holds its own run folder's lock."""
    from spurmem.config import dump_config
    from spurmem.locks import folder_lock
    from spurmem.record import utc_now, write_json_atomic, write_text_atomic

    jobs = plan_sweep(sweep, relative_to)
    mine = shard(jobs, part)
    folder = sweep.output if part is None else sweep.output / SHARDS_DIR / f"{part[0]}-of-{part[1]}"
    with folder_lock(folder, f"sweep {sweep.name}"):
        write_text_atomic(folder / "sweep.yaml", dump_config(sweep))
        options = dict(workers=sweep.workers, threads_per_job=sweep.threads_per_job, address=sweep.ray_address,
                       gpus_per_job=sweep.gpus_per_job)
        with make_executor(sweep.executor, **options) as executor:
            inline = executor.slots == 1 and sweep.executor == "local"
            with Progress(f"sweep {sweep.name}", len(mine), unit="jobs", enabled=progress,
                          cost=f"{len(mine)} {'probes' if sweep.kind == 'probe' else 'runs'} of {len(jobs)}" + (f" (shard {part[0]}/{part[1]})" if part else "")
                               + f"; {executor.describe()}") as bar:
                outcomes = run_jobs([j.job(progress=progress and inline) for j in mine], executor,
                                    retries=sweep.retries, progress=bar, log=log)
        for job, outcome in zip(mine, outcomes):
            if outcome.status != "skipped":  # a skipped job keeps the record of the session that ran it
                write_json_atomic(sweep.output / JOBS_DIR / f"{job.record_name}.json",
                                  {"job": outcome.job.name, "status": outcome.status, "attempts": outcome.attempts,
                                   "error": outcome.error, "seconds": round(outcome.seconds, 3),
                                   "executor": sweep.executor, "finished": utc_now()})
        result = SweepResult(sweep, mine, outcomes)
        result.table = results_table(sweep, mine, {o.job.run_dir: o for o in outcomes})
        result.written = write_results(folder, sweep, result.table)
    return result


def collect_sweep(sweep: SweepConfig, relative_to: Path | None = None) -> SweepResult:
    """The table of every job of the sweep from its run folder and job record (after sharded runs),
    written to ``<out>/results.csv`` and ``summary.md``; nothing is trained."""
    from spurmem.locks import folder_lock

    jobs = plan_sweep(sweep, relative_to)
    with folder_lock(sweep.output, f"sweep {sweep.name} --collect"):
        result = SweepResult(sweep, jobs)
        result.table = results_table(sweep, jobs, {})
        result.written = write_results(sweep.output, sweep, result.table)
    return result


RESULT_COLUMNS = ["job", "status", "attempts", "error", "selection_rule", "selected_epoch", "selection_value",
                  "val_wga", "test_wga", "val_average", "test_average", "seconds", "run_dir"]


def results_table(sweep: SweepConfig, jobs: list[SweepJob], outcomes: dict[Path, JobOutcome]):
    """One row per job: its varied settings, then :data:`RESULT_COLUMNS` (metrics at the selected
    epoch; empty for a job that has not finished). The status is this session's outcome, else what
    the job's record and folder say."""
    import pandas as pd

    from spurmem.jobs.tasks import TASKS
    from spurmem.train.run import read_history, read_info
    from spurmem.untrusted import read_json_file

    keys = list(dict.fromkeys(k for j in jobs for k in j.settings))
    rows = []
    for j in jobs:
        record_path = sweep.output / JOBS_DIR / f"{j.record_name}.json"
        record = read_json_file(record_path, "a sweep job record (JSON)") if record_path.is_file() else {}
        record = record if isinstance(record, dict) else {}
        folder = TASKS[j.kind].status(j.run_dir)
        outcome = outcomes.get(j.run_dir)
        status = outcome.status if outcome is not None else (
            "complete" if folder == "complete" else record.get("status") or ("not run" if folder == "new" else folder))
        row = {**{k: j.settings.get(k) for k in keys}, "job": j.label, "status": status,
               "attempts": outcome.attempts if outcome is not None else record.get("attempts", 0),
               "error": (outcome.error if outcome is not None else record.get("error", "")) if status != "complete" and
               status != "skipped" else "", "run_dir": str(j.run_dir),
               "seconds": outcome.seconds if outcome is not None and outcome.status == "complete"
               else record.get("seconds")}
        if j.kind == "compare":
            rows += _compare_rows(row, j.run_dir) if folder == "complete" else [{**row, "algorithm": None}]
            continue
        if j.kind == "probe":
            from spurmem.jobs.probe_sweep import probe_row

            rows.append(probe_row(row, j, finished=folder == "complete"))
            continue
        if folder == "complete":
            info = read_info(j.run_dir)
            selection = info.get("selection") or {}
            history = {r["epoch"]: r for r in read_history(j.run_dir)}
            chosen = history.get(selection.get("epoch"), {})
            row.update(selection_rule=selection.get("rule"), selected_epoch=selection.get("epoch"),
                       selection_value=selection.get("value"),
                       val_wga=chosen.get("val/worst_group_accuracy"), test_wga=chosen.get("test/worst_group_accuracy"),
                       val_average=chosen.get("val/average"), test_average=chosen.get("test/average"))
            if row["seconds"] is None:
                row["seconds"] = info.get("seconds")
        rows.append(row)
    if sweep.kind == "probe":
        from spurmem.jobs.probe_sweep import PROBE_RESULT_COLUMNS, figure_columns

        return pd.DataFrame(rows, columns=[*keys, *PROBE_RESULT_COLUMNS, *figure_columns(rows)])
    columns = [*keys, *(["algorithm", "seeds"] if any(j.kind == "compare" for j in jobs) else []), *RESULT_COLUMNS]
    return pd.DataFrame(rows, columns=columns)


def _compare_rows(row: dict[str, Any], folder: Path) -> list[dict[str, Any]]:
    """One row per algorithm of a finished comparison job: means over its seeds (per_run.csv)."""
    import pandas as pd

    per_run = pd.read_csv(folder / "per_run.csv")
    rows = []
    for algorithm, part in per_run.groupby("algorithm", sort=False):
        rule = part["selection_rule"].iloc[0]
        epochs = sorted(set(part["selected_epoch"].tolist()))
        rows.append({**row, "algorithm": algorithm, "seeds": len(part), "selection_rule": rule,
                     "selected_epoch": epochs[0] if len(epochs) == 1 else "/".join(map(str, epochs)),
                     "selection_value": part["selection_value"].mean(),
                     "val_wga": part["selection_value"].mean() if rule == "val_wga" else None,
                     "test_wga": part["test/worst_group_accuracy"].mean(), "test_average": part["test/average"].mean()})
    return rows


def write_results(folder: Path, sweep: SweepConfig, table) -> dict[str, Path]:
    """``results.csv`` and ``summary.md`` (status counts, then the jobs best first by the selection
    value) into ``folder``, atomically."""
    from spurmem.record import write_text_atomic

    csv = write_text_atomic(folder / RESULTS_FILE, table.to_csv(index=False))
    counts = table["status"].value_counts()
    lines = [f"# Sweep {sweep.name}", "",
             f"{len(table)} jobs: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + ".", ""]
    if sweep.kind == "probe":
        from spurmem.jobs.probe_sweep import PROBE_RESULT_COLUMNS, summary_lines

        keys = [c for c in table.columns if c not in PROBE_RESULT_COLUMNS and not c.startswith(("claim_", "n_"))
                and c != "probe_seconds"]
        lines += summary_lines(table)
    else:
        keys = [c for c in table.columns if c not in RESULT_COLUMNS]
        lines += _train_summary_lines(table)
    failed = table[table["status"] == "failed"]
    if len(failed):
        lines += ["", "## Failed", ""] + [f"- {Path(d['run']).name + ' ' if 'run' in d else ''}{d['job']}: {d['error']}"
                                          for d in failed.to_dict("records")]
    if keys:
        lines += ["", f"Varied: {', '.join(keys)}."]
    summary = write_text_atomic(folder / SUMMARY_FILE, "\n".join(lines) + "\n")
    return {"csv": csv, "summary": summary}


def _train_summary_lines(table) -> list[str]:
    """The jobs of a train or compare sweep, best first by the selection value."""
    rule = next((r for r in table["selection_rule"].dropna()), None)
    lines = [f"Selection: {rule} (per run, at its selected epoch). Table: {RESULTS_FILE}.", ""] if rule else []
    header = ["job", "status", "selected epoch", "val WGA %", "test WGA %", "test avg %"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    ordered = table.sort_values("selection_value", ascending=False, na_position="last", kind="stable")
    for d in ordered.to_dict("records"):
        job = d["job"] + (f" {d['algorithm']}" if isinstance(d.get("algorithm"), str) else "")
        lines.append("| " + " | ".join([job, d["status"], _cell(d["selected_epoch"], 1, "{:.0f}"),
                                        _cell(d["val_wga"]), _cell(d["test_wga"]), _cell(d["test_average"])]) + " |")
    return lines


def _cell(value: Any, scale: float = 100.0, fmt: str = "{:.1f}") -> str:
    """A number of the summary (a fraction as a percentage by default); empty when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return fmt.format(scale * value)


def short_value(value: Any) -> str:
    """A setting's value as the job labels show it (floats to 4 significant digits)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


__all__ = ["Distribution", "RandomSearch", "SweepConfig", "SweepJob", "SweepResult", "cells", "collect_sweep",
           "load_sweep", "plan_sweep", "results_table", "run_sweep", "short_value", "write_results"]
