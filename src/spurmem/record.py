"""The experiment record: how a result was made, written next to it.

Every command that writes into a run directory (train, probe, scan, compare, report, demo) records
its resolved config, the package version, the git commit, the seeds, its timings and the host, so a
result can be traced back without the shell history. Use :func:`record_command`::

    with record_command(run_dir, "probe", config=cfg.model_dump(), seeds=[0, 1]) as rec:
        ...                                    # do the work
        rec.outputs.append("probes/grid")     # optional: what it wrote

It writes ``RUN_DIR/records/<UTC time>-<command>.json`` atomically when the command starts
(``status: running``) and again when it ends (``complete`` or ``failed`` with the error), so a
killed command leaves a record that says so. :func:`environment` gives the provenance fields alone
(for ``run.json``), and :func:`write_json_atomic` / :func:`write_text_atomic` the atomic writes
(strict JSON: NaN and infinities are written as null).
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from spurmem import __version__

RECORDS_DIR = "records"


TEMP_SUFFIX = ".tmp"
_umask_guard = threading.Lock()


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file in the same folder and ``os.replace``."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def _file_mode() -> int:
    """The mode ``open()`` would give a new file under the current umask (0644 under umask 022)."""
    with _umask_guard:  # reading the umask means setting it; keep other threads out meanwhile
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file ``.<name>.*.tmp`` in the same folder and
    ``os.replace``; a failed write leaves the old file as it was and no temporary file behind (a
    killed one leaves the temporary file, which :func:`sweep_temp_files` removes). The file gets the
    umask's mode, not ``mkstemp``'s private 0600, so collaborators can read results."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # what write_bytes_atomic's mkstemp names


def sweep_temp_files(folder: str | Path) -> list[Path]:
    """Delete the temporary files (``.<name>.XXXXXXXX.tmp``) that killed atomic writes left in
    ``folder`` and its subfolders, except subfolders holding a ``.lock`` of their own (another
    writer's); returns them. Called by whoever takes the folder's lock (``spurmem.locks``), so no
    live write is touched."""
    from spurmem.locks import LOCK_FILE

    root = Path(folder)
    removed = []
    for here, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not (Path(here) / d / LOCK_FILE).exists()]
        for name in files:
            if _TEMP_NAME.match(name):
                (Path(here) / name).unlink(missing_ok=True)
                removed.append(Path(here) / name)
    return removed


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, +-inf, also numpy's) replaced by None and numpy
    scalars by Python numbers: what spurmem's JSON files hold instead of the invalid bare ``NaN``."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "item") and hasattr(obj, "dtype") and getattr(obj, "shape", None) == ():  # numpy/torch scalar
        return json_safe(obj.item())
    return obj


def dumps_strict(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` that writes valid JSON only: non-finite floats become null (:func:`json_safe`),
    values JSON lacks are written as strings."""
    return json.dumps(json_safe(obj), allow_nan=False, default=str, **kwargs)


def json_text(obj: Any) -> str:
    """The text :func:`write_json_atomic` writes: strict JSON, indented, sorted keys, trailing newline."""
    return dumps_strict(obj, indent=2, sort_keys=True) + "\n"


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Strict JSON (non-finite floats as null) with sorted keys and a trailing newline; values that
    JSON lacks are written as strings."""
    return write_text_atomic(path, json_text(obj))


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_commit(start: str | Path | None = None) -> str | None:
    """The commit of the git checkout holding ``start`` (default: this package), with ``+dirty``
    appended when tracked files differ from it; None outside a checkout or without git."""
    where = Path(start) if start is not None else Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where, capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = head.stdout.strip()
    return commit + ("+dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def environment() -> dict[str, Any]:
    """Provenance fields shared by every record: versions, commit, host, process id, platform."""
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:  # pragma: no cover - torch is a hard dependency
        torch_version = None
    return {
        "spurmem_version": __version__,
        "git_commit": git_commit(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "platform": platform.platform(),
        "python_version": platform.python_version(),
        "torch_version": torch_version,
        "argv": list(sys.argv),
    }


@dataclass
class CommandRecord:
    """What one command did in a run directory; written as JSON by :func:`record_command`."""

    command: str
    config: dict[str, Any]
    seeds: list[int]
    started: str
    status: str = "running"
    finished: str | None = None
    seconds: float | None = None
    error: str | None = None
    outputs: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=environment)

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Add the wall time of a block to ``timings[name]`` (seconds)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0


@contextmanager
def record_command(
    run_dir: str | Path,
    command: str,
    config: dict[str, Any] | None = None,
    seeds: list[int] | int | None = None,
) -> Iterator[CommandRecord]:
    """Record ``command`` in ``run_dir/records/``: written at the start and rewritten at the end."""
    seeds_list = [] if seeds is None else ([int(seeds)] if isinstance(seeds, int) else [int(s) for s in seeds])
    rec = CommandRecord(command=command, config=dict(config or {}), seeds=seeds_list, started=utc_now())
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")  # unique and sortable
    path = Path(run_dir) / RECORDS_DIR / f"{stamp}-{command.replace(' ', '-')}.json"
    write_json_atomic(path, asdict(rec))
    t0 = time.perf_counter()
    try:
        yield rec
    except BaseException as exc:
        rec.status, rec.error = "failed", f"{type(exc).__name__}: {exc}"
        raise
    else:
        rec.status = "complete"
    finally:
        rec.finished = utc_now()
        rec.seconds = round(time.perf_counter() - t0, 3)
        write_json_atomic(path, asdict(rec))


def read_records(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every command record of a run, oldest first (unreadable files are reported, not skipped)."""
    folder = Path(run_dir) / RECORDS_DIR
    records = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        from spurmem.untrusted import read_json_file

        rec = read_json_file(path, "a command record (JSON)")
        if not isinstance(rec, dict):
            from spurmem.errors import UnreadableFileError

            raise UnreadableFileError(path, "a command record (JSON)", "expected a JSON object")
        rec["path"] = str(path)
        records.append(rec)
    return records
