"""``kind: probe`` sweeps: a base :class:`~spurmem.probes.config.ProbeConfig` with some of its keys
varied, run on every training run of ``runs``.

::

    name: probe-k
    kind: probe
    runs: runs/erm-*-s*                 # trained run folders (a list, or a glob), resolved at plan time
    base: {scorers: [weight-norm], interventions: [zero], repeats: 10}
    grid: {k: [1, 3, 10], epoch: [selected, last]}

Each job is one probe of one run with one cell's settings, written by ``spurmem probe``'s own code
(:func:`spurmem.probes.api.probe_run`, which holds the probe folder's lock) to
``<run>/probes/<base name>-<config hash>``; a probe folder whose set is whole (``probe.manifest.json``
complete, see :mod:`spurmem.fileset`) is finished and skipped on a re-run. A scalar value for a list
key of the probe config (``k``, ``scorers``, ``interventions``, ...) means the one-element list, so
``grid: {k: [1, 3]}`` is two jobs, ``k=[1]`` and ``k=[3]``. ``results.csv`` has one row per job:
the run, the varied settings, the status and the probe's headline figures read from its
``verdicts.json`` (each claim's verdict and the count of each setting outcome).
"""

from __future__ import annotations

import copy
import glob
import hashlib
import re
import types
import typing
from pathlib import Path
from typing import Any

from spurmem.config import ConfigError, config_hash, set_dotted, validate_config
from spurmem.jobs.sweep import SweepConfig, SweepJob, base_data, cells, short_value

PROBE_HASH_EXCLUDE = ("name", "device")  # fields that do not change a probe's results
PROBE_SET = "probe"  # the fileset name of a probe folder (probe.manifest.json)
VERDICTS_FILE = "verdicts.json"
PROBE_RESULT_COLUMNS = ["job", "run", "status", "attempts", "error", "seconds", "probe_dir"]


def claim_column(claim: str) -> str:
    """The results.csv column of a claim's verdict: ``5.1 sensitivity`` -> ``claim_5_1_sensitivity``."""
    return "claim_" + re.sub(r"[^0-9a-z]+", "_", claim.lower()).strip("_")


def outcome_column(label: str) -> str:
    """The results.csv column of an outcome's count: ``class collapse`` -> ``n_class_collapse``."""
    return "n_" + re.sub(r"[^0-9a-z]+", "_", label.lower()).strip("_")


def resolve_runs(sweep: SweepConfig) -> list[Path]:
    """The training runs of a probe sweep: every entry of ``runs`` (a folder, or a glob of folders),
    in the order given (a glob's matches sorted), each once; a missing or unfinished run, or a glob
    that matches nothing, is a ConfigError naming it."""
    from spurmem.train.run import run_status

    entries = [sweep.runs] if isinstance(sweep.runs, str) else list(sweep.runs or [])
    if not entries:
        raise ConfigError(f"sweep {sweep.name}: kind probe needs runs: a list of trained run folders or a glob")
    found: dict[Path, Path] = {}
    for entry in entries:
        if glob.has_magic(entry):
            matches = sorted(Path(p) for p in glob.glob(entry) if Path(p).is_dir())
            if not matches:
                raise ConfigError(f"sweep {sweep.name}: runs: {entry!r} matches no folder")
        else:
            matches = [Path(entry)]
        for run in matches:
            if not run.is_dir():
                raise ConfigError(f"sweep {sweep.name}: runs: run folder {run} does not exist")
            status = run_status(run)
            if status != "complete":
                raise ConfigError(f"sweep {sweep.name}: runs: {run} is not a finished training run (status {status}; "
                                  "expected run.json with status complete): finish it with `spurmem train` or leave it out")
            found.setdefault(run.resolve(), run)
    return list(found.values())


def _list_key(field) -> bool:
    """Whether a ProbeConfig field holds a list (or None)."""
    annotation = field.annotation
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    return any(typing.get_origin(a) is list for a in (typing.get_args(annotation) if union else (annotation,)))


def probe_value(key: str, value: Any) -> Any:
    """``value`` as set on ``key``: a scalar for a list key of ProbeConfig becomes ``[value]``."""
    from spurmem.probes.config import ProbeConfig

    field = ProbeConfig.model_fields.get(key)
    if field is not None and _list_key(field) and value is not None and not isinstance(value, (list, tuple)):
        return [value]
    return value


def _record_names(runs: list[Path]) -> dict[Path, str]:
    """A name per run for the sweep's job records: the folder's name, with a hash of its path where
    two runs of the sweep share a name."""
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.name] = counts.get(run.name, 0) + 1
    return {run: run.name if counts[run.name] == 1 else
            f"{run.name}-{hashlib.sha256(str(run.resolve()).encode()).hexdigest()[:6]}" for run in runs}


def plan_probe_sweep(sweep: SweepConfig, relative_to: Path | None = None) -> list[SweepJob]:
    """Every job of a ``kind: probe`` sweep (each run with each cell, the runs outermost) with its
    validated ProbeConfig and probe folder; a cell that is not a valid ProbeConfig, or two cells
    that make the same probe, is a ConfigError naming them."""
    from spurmem.probes.api import PROBES_DIR
    from spurmem.probes.config import ProbeConfig

    base, source = base_data(sweep, relative_to)
    planned: list[tuple[dict[str, Any], Any]] = []
    seen: dict[str, str] = {}
    for settings in cells(sweep):
        data = copy.deepcopy(base)
        origins = {}
        for key, value in settings.items():
            set_dotted(data, key, probe_value(key, copy.deepcopy(value)), f"sweep key {key}")
            origins[tuple(key.split("."))] = f"sweep setting {key}={short_value(value)}"
        config = validate_config(ProbeConfig, data, source=source, origins=origins)
        name = f"{config.name}-{config_hash(config, PROBE_HASH_EXCLUDE)[:8]}"
        label = " ".join(f"{k}={short_value(v)}" for k, v in settings.items()) or "base"
        if name in seen:
            raise ConfigError(f"sweep {sweep.name}: {seen[name]!r} and {label!r} make the same probe "
                              f"(the keys {', '.join(PROBE_HASH_EXCLUDE)} do not change a probe)")
        seen[name] = label
        planned.append((settings, config.model_copy(update={"name": name})))
    runs = resolve_runs(sweep)
    records = _record_names(runs)
    return [SweepJob(settings, config, run / PROBES_DIR / config.name, "probe", run=run,
                     record=f"{records[run]}.{config.name}") for run in runs for settings, config in planned]


def probe_status(folder: str | Path) -> str:
    """``complete`` once the probe's file set is whole (its manifest complete, every file matching
    it), ``partial`` for a folder with anything in it, else ``new``."""
    from spurmem.fileset import check_set, manifest_path

    folder = Path(folder)
    if manifest_path(folder, PROBE_SET).is_file() and check_set(folder, PROBE_SET) is None:
        return "complete"
    return "partial" if folder.is_dir() and any(folder.iterdir()) else "new"


def probe_figures(folder: Path) -> dict[str, Any]:
    """The headline figures of a finished probe from its ``verdicts.json``: each claim's verdict
    (``claim_*`` columns) and the count of each setting outcome (``n_*`` columns)."""
    from spurmem.errors import UnreadableFileError
    from spurmem.probes.verdicts import LABELS
    from spurmem.untrusted import read_json_file

    path = folder / VERDICTS_FILE
    data = read_json_file(path, "a probe's verdicts (JSON)")
    if not isinstance(data, dict) or not isinstance(data.get("claims", []), list):
        raise UnreadableFileError(path, "a probe's verdicts (JSON)", "expected an object with a list of claims")
    figures: dict[str, Any] = {}
    for claim in data.get("claims", []):
        if isinstance(claim, dict) and "claim" in claim:
            figures[claim_column(str(claim["claim"]))] = claim.get("verdict") or claim.get("status")
    counts = data.get("setting_verdict_counts") or {}
    for label in [*LABELS, *(k for k in counts if k not in LABELS)]:
        figures[outcome_column(label)] = int(counts.get(label, 0))
    figures["probe_seconds"] = data.get("seconds")
    return figures


def figure_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The claim and outcome columns of a probe sweep's table: the standard claims and every
    outcome label always, then any other claim or label a probe wrote."""
    from spurmem.probes.verdicts import LABELS, PROBE_CLAIMS

    claims = [claim_column(c) for c in PROBE_CLAIMS]
    outcomes = [outcome_column(label) for label in LABELS]
    extra = [k for r in rows for k in r if k.startswith(("claim_", "n_")) and k not in claims and k not in outcomes]
    claims += [k for k in dict.fromkeys(extra) if k.startswith("claim_")]
    outcomes += [k for k in dict.fromkeys(extra) if k.startswith("n_")]
    return [*claims, *outcomes, "probe_seconds"]


def probe_row(row: dict[str, Any], job: SweepJob, finished: bool) -> dict[str, Any]:
    """The results.csv row of a probe job: ``row`` (settings, status, ...) with the run, the probe
    folder and, when the probe is finished, its figures."""
    row = {**row, "run": str(job.run), "probe_dir": str(job.run_dir)}
    row.pop("run_dir", None)
    return {**row, **probe_figures(job.run_dir)} if finished else row


def summary_lines(table) -> list[str]:
    """The jobs table of a probe sweep's summary.md: each job's claims and non-zero outcomes."""
    from spurmem.probes.verdicts import LABELS

    from spurmem.probes.verdicts import PROBE_CLAIMS

    claims = [c for c in table.columns if c.startswith("claim_")]
    names = {claim_column(c): c for c in PROBE_CLAIMS}
    header = ["job", "status", *(names.get(c, c.removeprefix("claim_")) for c in claims), "setting outcomes"]
    lines = [f"Probes of {table['run'].nunique()} run(s); each job's folder is RUN/probes/<name>-<hash>. "
             "Claims: docs/method.md §5; table: results.csv.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    labels = {outcome_column(label): label for label in LABELS}
    for d in table.to_dict("records"):
        outcomes = ", ".join(f"{labels.get(c, c.removeprefix('n_'))} {int(d[c])}" for c in table.columns
                             if c.startswith("n_") and isinstance(d[c], (int, float)) and d[c] == d[c] and d[c] > 0)
        cells = [f"{Path(d['run']).name} {d['job']}", d["status"],
                 *(d[c] if isinstance(d[c], str) else "" for c in claims), outcomes]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


__all__ = ["PROBE_RESULT_COLUMNS", "claim_column", "figure_columns", "outcome_column", "plan_probe_sweep",
           "probe_figures", "probe_row", "probe_status", "probe_value", "resolve_runs", "summary_lines"]
