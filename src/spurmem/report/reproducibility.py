"""The report's reproducibility section, built only from what the runs recorded.

Each run directory holds ``run.json`` (git commit, package versions, device, threads, host, times),
``config.yaml`` (every hyper-parameter) and ``records/`` (one JSON per command with its command line
and environment, see :mod:`spurmem.record`). This section puts them together: the code to check out,
the versions to install, the hyper-parameters shared by all runs and those that differ, and the
command lines in the order they ran.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pandas as pd

from spurmem.report.html import Section
from spurmem.report.runs import Run
from spurmem.report.tables import ReportTable

CONFIG_FILE = "config.yaml"
PER_RUN_KEYS = ("name",)  # differ between runs by construction; not hyper-parameters


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and scalars are kept as values."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(_flatten(sub, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value} if prefix else {}


def _text(value: Any) -> str:
    """A config value as it would be written on the command line (``[train, val]``, ``null``, ``{}``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, dict)):
        return json.dumps(value).replace('"', "")
    return str(value)


def run_config(run: Run) -> dict[str, Any]:
    """The run's ``config.yaml``, flattened to dotted keys ({} when absent or unreadable: the run's other
    report sections say what is wrong with it)."""
    from spurmem.config import read_yaml_mapping
    from spurmem.errors import SpurmemError

    path = run.path / CONFIG_FILE
    if not path.is_file():
        return {}
    try:
        data, _ = read_yaml_mapping(path)
    except SpurmemError:
        return {}
    return _flatten(data)


def hyperparameters(runs: list[Run]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(shared, varying): the settings every run has with one value (setting, value), and one row per run
    with the settings whose values differ (or that some runs lack)."""
    configs = {r.name: run_config(r) for r in runs}
    keys = list(dict.fromkeys(k for c in configs.values() for k in c if k not in PER_RUN_KEYS))
    shared, varying = [], []
    for key in keys:
        values = {_text(c[key]) if key in c else "(not set)" for c in configs.values()}
        (shared if len(values) == 1 else varying).append(key)
    shared_frame = pd.DataFrame([{"setting": k, "value": _text(next(iter(configs.values()))[k])} for k in shared],
                                columns=["setting", "value"])
    varying_frame = pd.DataFrame([{"run": name, **{k: _text(c[k]) if k in c else "" for k in varying}}
                                  for name, c in configs.items()], columns=["run", *varying])
    return shared_frame, varying_frame


def provenance_table(runs: list[Run]) -> pd.DataFrame:
    """One row per run: code, versions, device and threads, host, when and how long, its config file."""
    rows = []
    for r in runs:
        info = r.info
        device = str(info.get("device", "?"))
        if info.get("threads"):
            device += f", {info['threads']} thread{'s' if info['threads'] != 1 else ''}"
        rows.append({
            "run": r.name, "algorithm": r.algorithm, "seed": r.seed,
            "git commit": str(info.get("git_commit") or "not recorded"),
            "versions": f"spurmem {info.get('spurmem_version', '?')}, torch {info.get('torch_version', '?')}",
            "device": device, "host": info.get("host", "?"),
            "started": str(info.get("started") or "").replace("T", " ").replace("+00:00", " UTC"),
            "seconds": info.get("seconds"),
            "config": str(r.path / CONFIG_FILE) if (r.path / CONFIG_FILE).is_file() else "absent",
        })
    return pd.DataFrame(rows)


def _command_line(argv: list[str]) -> str:
    """``argv`` as a shell line, the entry point shortened to ``spurmem``."""
    if not argv:
        return ""
    head = Path(argv[0]).name
    if head in ("spurmem", "__main__.py", "cli.py"):
        head = "spurmem"
    return shlex.join([head, *argv[1:]])


def _records(folders: list[Path]) -> list[dict[str, Any]]:
    from spurmem.record import read_records

    found = []
    for folder in folders:
        try:
            found.extend({**rec, "folder": str(folder)} for rec in read_records(folder))
        except ValueError as exc:  # a record that is not JSON: said in a note, the others still shown
            found.append({"unreadable": str(exc), "folder": str(folder)})
    return found


def command_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The distinct command lines, oldest first: what ran from each, how often, and how it ended."""
    lines: dict[str, dict[str, Any]] = {}
    for rec in sorted((r for r in records if "unreadable" not in r), key=lambda r: str(r.get("started", ""))):
        env = rec.get("environment") or {}
        line = _command_line(list(env.get("argv") or [])) or f"(no command line) {rec.get('command', '?')}"
        row = lines.setdefault(line, {"started": rec.get("started", ""), "command line": line, "steps": {},
                                      "statuses": {}, "python": env.get("python_version", "?")})
        row["steps"][rec.get("command", "?")] = row["steps"].get(rec.get("command", "?"), 0) + 1
        row["statuses"][rec.get("status", "?")] = row["statuses"].get(rec.get("status", "?"), 0) + 1
    return pd.DataFrame([{
        "started": r["started"], "command line": r["command line"],
        "recorded steps": ", ".join(f"{k} x{n}" if n > 1 else k for k, n in r["steps"].items()),
        "status": ", ".join(f"{k} x{n}" if n > 1 else k for k, n in r["statuses"].items()), "python": r["python"],
    } for r in lines.values()], columns=["started", "command line", "recorded steps", "status", "python"])


def reproducibility_section(paths: list[str | Path], runs: list[Run]) -> Section:
    section = Section(
        "Reproducing these results",
        intro="Everything needed to run these experiments again, as the runs recorded it: the code (git commit) "
        "and package versions, every hyper-parameter (each run's config.yaml; below, the settings shared by all "
        "runs and those that differ) and the command lines in the order they ran (each folder's records/).",
    )
    if not runs:
        return section
    commits = sorted({str(r.info.get("git_commit") or "not recorded") for r in runs})
    versions = sorted({f"spurmem {r.info.get('spurmem_version', '?')}, torch {r.info.get('torch_version', '?')}"
                       for r in runs})
    section.notes.append(
        f"Code: git commit{'s' if len(commits) > 1 else ''} {', '.join(commits)}; {'; '.join(versions)}. To rerun: "
        "`git checkout COMMIT`, install those versions, then run the command lines below in order (a run's "
        "`config.yaml` can also be passed back as `spurmem train --config RUN_DIR/config.yaml`).")
    if any(c.endswith("+dirty") for c in commits):
        section.notes.append("'+dirty': tracked files differed from that commit when a run was made, so the commit "
                             "alone does not give back the exact code.")
    if len(commits) > 1:
        section.notes.append("The runs were made from more than one commit; compare them with care.")
    section.tables.append(ReportTable(
        "reproducibility_runs", "How each run was made", "From each run's run.json: the commit, the package "
        "versions, the device (with torch CPU threads), the host, the start time and wall seconds, and the file "
        "holding the run's full configuration.", provenance_table(runs)))
    shared, varying = hyperparameters(runs)
    if not shared.empty:
        section.tables.append(ReportTable(
            "reproducibility_shared_settings", "Settings shared by every run",
            "Every config.yaml key (dotted for nested ones) with one value across all runs.", shared))
    if len(varying.columns) > 1:
        section.tables.append(ReportTable(
            "reproducibility_varying_settings", "Settings that differ between runs",
            "The config.yaml keys whose values differ between runs (empty: the run's config lacks the key).",
            varying))
    folders = list(dict.fromkeys([*(r.path for r in runs), *(Path(p) for p in paths if Path(p).is_dir())]))
    records = _records(folders)
    for bad in (r for r in records if "unreadable" in r):
        section.notes.append(f"Unreadable command record: {bad['unreadable']}")
    commands = command_table(records)
    if commands.empty:
        section.notes.append("No command records (records/) in these folders: the runs were made before spurmem "
                             "recorded commands, or copied without their records/ folders.")
    else:
        section.tables.append(ReportTable(
            "reproducibility_commands", "Command lines, in the order they ran",
            "Each distinct command line found in the records/ of these folders, with the steps it recorded "
            "(e.g. one train per run of a comparison), how they ended and the Python version.", commands))
    return section
