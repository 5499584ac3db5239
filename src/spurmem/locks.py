"""Folder locks: one writing process per run directory, comparison or output folder.

Every command that writes into a folder holds its lock for as long as it writes::

    with folder_lock(run_dir, "train"):
        ...                      # a second process gets RunLockedError at once

The lock is ``<folder>/.lock``, held with ``fcntl.flock`` on an open file and holding JSON
``{"pid", "host", "command", "started"}`` of the owner. The kernel drops a ``flock`` when its
process dies (``kill -9`` included), so a lock file left by a dead process is *stale* by
construction: the next taker finds the lock free and overwrites the owner. The file is removed on
release. Within one process the lock is re-entrant (a command that calls another stage on the same
folder, e.g. ``compare`` -> ``train``); the outermost release frees it.

Why ``fcntl`` and not the ``filelock`` package: ``filelock`` truncates the lock file on every
attempt to take it, which would erase the owner a waiting process needs to name, and it adds a
dependency for some forty lines. ``flock`` is POSIX-only (Linux, macOS) and, on NFS, only as good as
the server's lock support; on a system without ``fcntl`` the lock is skipped with a warning.

:func:`lock_owner` says who holds a folder (None when free or stale), for ``spurmem runs`` and for
schedulers that fan runs out over processes.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from spurmem.errors import RunLockedError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"

_held: dict[Path, list] = {}  # resolved folder -> [fd, depth] of the locks this process holds
_guard = threading.Lock()


def _forget_in_child() -> None:
    """A forked child (a data-loading worker) does not own its parent's locks: close its copies of
    the lock files so a parent killed first does not leave the folder locked by the child."""
    for fd, _ in _held.values():
        if fd is not None:
            os.close(fd)
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def _key(folder: str | Path) -> Path:
    return Path(folder).resolve()


def _read_owner(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(owner: dict[str, Any]) -> str:
    if not owner:
        return "another process (owner not yet written)"
    return (f"pid {owner.get('pid')} on {owner.get('host')} (`{owner.get('command')}`, "
            f"started {owner.get('started')})")


def acquire(folder: str | Path, command: str) -> None:
    """Take the lock of ``folder`` (created if missing) for this process, or raise
    :class:`RunLockedError` naming the live owner. Re-entrant; pair every call with :func:`release`."""
    from spurmem.record import sweep_temp_files, utc_now

    key = _key(folder)
    with _guard:
        if key in _held:
            _held[key][1] += 1
            return
        if fcntl is None:  # pragma: no cover - Windows
            warnings.warn("no fcntl on this system: folder locks are not enforced", stacklevel=2)
            _held[key] = [None, 1]
            return
        key.mkdir(parents=True, exist_ok=True)
        path = key / LOCK_FILE
        for _ in range(10):  # the file may be replaced between open and flock by a releasing owner
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunLockedError(
                    f"{key} is in use by {_describe(_read_owner(path))}; wait for it to finish, or stop that "
                    f"process (a lock of a dead process is taken over automatically)") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        else:  # pragma: no cover - ten releases in a row between open and flock
            raise RunLockedError(f"{key}: could not take the lock (it kept changing hands)")
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "command": command, "started": utc_now()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(owner) + "\n").encode("utf-8"), 0)
        _held[key] = [fd, 1]
    sweep_temp_files(key)  # the partial writes of a killed owner


def release(folder: str | Path) -> None:
    """Undo one :func:`acquire`; the outermost removes ``.lock`` and frees the folder."""
    key = _key(folder)
    with _guard:
        entry = _held.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _held[key]
        fd = entry[0]
        if fd is None:  # pragma: no cover - Windows
            return
        try:
            (key / LOCK_FILE).unlink(missing_ok=True)  # while still holding it: a newcomer re-checks the inode
        finally:
            os.close(fd)


@contextmanager
def folder_lock(folder: str | Path, command: str) -> Iterator[Path]:
    """Hold the lock of ``folder`` for the block (see :func:`acquire`); yields the folder."""
    acquire(folder, command)
    try:
        yield Path(folder)
    finally:
        release(folder)


@contextmanager
def writing_into(path: str | Path, command: str) -> Iterator[Path]:
    """Hold the lock of the folder a single output file goes into, when that folder is a run folder
    (it has ``run.json``) or another command's (it has a lock file), for the block; a file written
    anywhere else (the working directory, ``/tmp``) takes no lock. For the ``--csv`` of read-only
    commands such as ``eval``: a CSV written into a run folder while ``train`` writes it fails at once."""
    folder = Path(path).parent
    if (folder / "run.json").is_file() or (folder / LOCK_FILE).exists():
        with folder_lock(folder, command):
            yield Path(path)
    else:
        yield Path(path)


def holds(folder: str | Path) -> bool:
    """Whether this process holds the lock of ``folder``."""
    with _guard:
        return _key(folder) in _held


def lock_owner(folder: str | Path) -> dict[str, Any] | None:
    """The live owner ``{"pid", "host", "command", "started"}`` of ``folder``'s lock, or None when the
    folder is free or its lock file was left by a dead process."""
    key = _key(folder)
    path = key / LOCK_FILE
    if holds(key):
        return _read_owner(path) or {"pid": os.getpid(), "host": socket.gethostname()}
    if fcntl is None or not path.is_file():  # pragma: no cover - Windows
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_owner(path) or {"pid": None, "host": None, "command": None, "started": None}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


__all__ = ["LOCK_FILE", "acquire", "folder_lock", "holds", "lock_owner", "release"]
