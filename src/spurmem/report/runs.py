"""Reading run directories (the contract in docs/architecture.md) into tidy tables.

A run directory holds ``run.json`` and ``metrics.jsonl``; this module never imports the training
code, so ``spurmem runs`` and ``spurmem report`` work on copied result folders too. Bad files raise
:class:`RunDirError` naming the file and line.
"""

from __future__ import annotations

import json
import math
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from spurmem.data.schema import DataError

RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
# Sub-folders of a run that never hold runs themselves; not searched by find_runs.
RUN_PARTS = {"checkpoints", "predictions", "records", "probes", "memorization", "report"}


RULE_NAMES = {
    "val_wga": "validation worst-group accuracy",
    "val_worst_group_accuracy": "validation worst-group accuracy",
    "val_worst_class": "validation worst-class accuracy",
    "val_average": "validation average accuracy",
    "last": "last epoch",
}


def rule_text(rule: str) -> str:
    """Readable name of a model-selection rule (``val_wga`` -> ``validation worst-group accuracy``)."""
    return RULE_NAMES.get(rule, rule.replace("_", " "))


class RunDirError(DataError):
    """A run directory is missing a file or holds a malformed one; the message names it."""


@dataclass
class Run:
    """One run directory: its ``run.json`` and its per-epoch metrics (oldest first)."""

    path: Path
    info: dict[str, Any]
    history: list[dict[str, Any]]

    @property
    def name(self) -> str:
        return str(self.info.get("name") or self.path.name)

    @property
    def algorithm(self) -> str:
        return str(self.info.get("algorithm", "?"))

    @property
    def seed(self) -> int | None:
        seed = self.info.get("seed")
        return int(seed) if seed is not None else None

    @property
    def status(self) -> str:
        return str(self.info.get("status", "unknown"))

    @property
    def selection(self) -> dict[str, Any]:
        return dict(self.info.get("selection") or {})

    @property
    def selection_rule(self) -> str:
        return str(self.selection.get("rule") or "last epoch")

    @property
    def selected_epoch(self) -> int | None:
        """The selected epoch, or the last evaluated one when the run names none."""
        epoch = self.selection.get("epoch")
        if epoch is not None:
            return int(epoch)
        return int(self.history[-1]["epoch"]) if self.history else None

    def metrics_at(self, epoch: int | None = None) -> dict[str, Any]:
        """The metrics.jsonl row of ``epoch`` (default: the selected epoch); {} when absent."""
        epoch = self.selected_epoch if epoch is None else epoch
        for row in self.history:
            if int(row.get("epoch", -1)) == epoch:
                return row
        return {}

    def describe_selection(self) -> str:
        """E.g. ``val worst-group accuracy, epoch 12`` for captions."""
        rule = rule_text(self.selection_rule)
        epoch = self.selected_epoch
        return f"{rule}, epoch {epoch}" if epoch is not None else rule


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / RUN_FILE).is_file()


def find_runs(root: str | Path) -> list[Path]:
    """Every run directory at or below ``root`` (a folder with ``run.json``), sorted by path."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such directory")
    if is_run_dir(root):
        found = [root]
    else:
        found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in RUN_PARTS)
        if RUN_FILE in filenames and Path(dirpath) != root:
            found.append(Path(dirpath))
    return sorted(found)


def read_run(path: str | Path) -> Run:
    """Read ``run.json`` and ``metrics.jsonl`` (which may be absent while a run starts)."""
    path = Path(path)
    run_file = path / RUN_FILE
    if not run_file.is_file():
        raise RunDirError(f"{path}: not a run directory (no {RUN_FILE}); expected the output of `spurmem train`")
    try:
        info = json.loads(run_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{run_file}: not valid JSON ({exc})") from exc
    if not isinstance(info, dict):
        raise RunDirError(f"{run_file}: expected a JSON object; expected the output of `spurmem train`")
    history = []
    metrics_file = path / METRICS_FILE
    if metrics_file.is_file():
        try:
            text = metrics_file.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise RunDirError(f"{metrics_file}: not UTF-8 text ({exc})") from None
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RunDirError(f"{metrics_file}:{lineno}: not valid JSON ({exc})") from exc
            if not isinstance(row, dict) or not isinstance(row.get("epoch"), int):
                raise RunDirError(f"{metrics_file}:{lineno}: row has no integer 'epoch' key")
            history.append(row)
    history.sort(key=lambda r: int(r["epoch"]))
    return Run(path=path, info=info, history=history)


def group_history(run: Run) -> pd.DataFrame:
    """Tidy per-group accuracy over epochs: one row per epoch x split x group."""
    rows = []
    for rec in run.history:
        for split, groups in (rec.get("groups") or {}).items():
            for g in groups:
                rows.append(
                    {
                        "run": run.name, "algorithm": run.algorithm, "seed": run.seed,
                        "epoch": int(rec["epoch"]), "split": split, "group": int(g["group"]),
                        "group_name": g.get("name", f"g{g['group']}"), "correct": g.get("correct"),
                        "count": g.get("count"), "accuracy": g.get("accuracy"),
                        "mean_margin": g.get("mean_margin"),
                    }
                )
    return pd.DataFrame(rows, columns=[
        "run", "algorithm", "seed", "epoch", "split", "group", "group_name", "correct", "count",
        "accuracy", "mean_margin",
    ])


def selected_groups(run: Run, epoch: int | None = None) -> pd.DataFrame:
    """Per-group results of the selected (or given) epoch, one row per split x group."""
    hist = group_history(run)
    epoch = run.selected_epoch if epoch is None else epoch
    return hist[hist["epoch"] == epoch].reset_index(drop=True)


def _num(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return out


HEADLINE_COLUMNS = [
    "name", "status", "dataset", "model", "algorithm", "seed", "epochs", "selection_rule", "selected_epoch",
    "val_wga", "test_wga", "test_average", "test_adjusted_average", "max_memorization_gap",
    "started", "seconds", "path",
]


def headline(run: Run) -> dict[str, Any]:
    """The numbers `spurmem runs` lists, all at the selected epoch (test WGA, averages, max gap)."""
    sel = run.metrics_at()
    gap = float("nan")
    groups = sel.get("groups") or {}
    if "train" in groups and "test" in groups:
        by_group = {g["group"]: g["accuracy"] for g in groups["test"]}
        gaps = [g["accuracy"] - by_group[g["group"]] for g in groups["train"] if g["group"] in by_group]
        gaps = [x for x in gaps if x is not None and not math.isnan(x)]
        gap = max(gaps) if gaps else gap
    status = run_state(run)
    if status in ("running", "killed", "unknown"):
        detail = [f"epoch {run.history[-1]['epoch']}"] if run.history else []
        owner = run_owner(run)
        if status == "unknown":
            detail.append(f"on host {owner['host']}" if owner and owner.get("host") else "no pid recorded")
        status += f" ({', '.join(detail)})" if detail else ""
    return {
        "name": run.name,
        "status": status,
        "dataset": run.info.get("dataset", "?"),
        "model": run.info.get("model", "?"),
        "algorithm": run.algorithm,
        "seed": run.seed,
        "epochs": int(run.history[-1]["epoch"]) if run.history else 0,
        "selection_rule": run.selection_rule,
        "selected_epoch": run.selected_epoch,
        "val_wga": _num(sel.get("val/worst_group_accuracy")),
        "test_wga": _num(sel.get("test/worst_group_accuracy")),
        "test_average": _num(sel.get("test/average")),
        "test_adjusted_average": _num(sel.get("test/adjusted_average")),
        "max_memorization_gap": gap,
        "started": run.info.get("started"),
        "seconds": _num(run.info.get("seconds")),
        "path": str(run.path),
    }


def run_owner(run: Run) -> dict[str, Any] | None:
    """The process that writes a run: the live lock's owner when ``spurmem.locks`` is there and holds one,
    else the ``pid`` and ``host`` its ``run.json`` records; None when neither says."""
    try:
        from spurmem.locks import lock_owner
    except ImportError:
        lock_owner = None
    owner = lock_owner(run.path) if lock_owner is not None else None
    if owner:
        return owner
    if run.info.get("pid") is not None:
        return {"pid": run.info["pid"], "host": run.info.get("host")}
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    except (OSError, ValueError, OverflowError):
        return False
    return True


def run_state(run: Run) -> str:
    """``run.json``'s status, except that a ``running`` run whose process is gone is ``killed``, and one
    whose process cannot be checked (another host, or no pid recorded) is ``unknown``."""
    if run.status != "running":
        return run.status
    owner = run_owner(run)
    if owner is None or owner.get("pid") is None:
        return "unknown"
    if owner.get("host") not in (None, socket.gethostname()):
        return "unknown"
    return "running" if _pid_alive(owner["pid"]) else "killed"


def select_runs(table: pd.DataFrame, status: str | None = None, algorithm: str | None = None,
                sort: str | None = None, reverse: bool = False) -> pd.DataFrame:
    """The rows of a :func:`runs_table` whose status (its first word: running, killed, complete, ...) and
    algorithm match, sorted by column ``sort`` (missing values last)."""
    if status is not None:
        table = table[table["status"].astype(str).str.split(" ").str[0] == status]
    if algorithm is not None:
        table = table[table["algorithm"] == algorithm]
    if sort is not None:
        if sort not in table.columns:
            from spurmem.config import ConfigError
            from spurmem.registry import unknown_name

            raise ConfigError(f"--sort: {unknown_name('column', sort, table.columns)}")
        table = table.sort_values(sort, ascending=not reverse, na_position="last", kind="stable")
    return table.reset_index(drop=True)


def runs_table(paths: list[str | Path]) -> pd.DataFrame:
    """One row per run directory under each of ``paths`` with its headline metrics."""
    runs = []
    for p in paths:
        runs.extend(find_runs(p))
    seen = sorted(set(runs))
    return pd.DataFrame([headline(read_run(p)) for p in seen], columns=HEADLINE_COLUMNS)
