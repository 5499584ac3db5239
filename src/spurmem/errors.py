"""The error types a user can see: each names the file, key or run and what was expected.

The command line turns every :class:`SpurmemError` into one line on stderr and exit status 2 (no
traceback unless ``--debug`` or ``SPURMEM_DEBUG=1``). Stage-specific errors (``ConfigError``,
``DataError``) subclass it, so callers of the Python API can catch them all at once.
"""

from __future__ import annotations

from pathlib import Path


class SpurmemError(Exception):
    """Base of every error spurmem raises on purpose; its message is meant for the user."""


class UnreadableFileError(SpurmemError, ValueError):
    """A file that spurmem reads (weights, checkpoint, resume state, config, unit list) is missing,
    truncated, of the wrong format or unsafe to load; the message names it and what was expected."""

    def __init__(self, path: str | Path, expected: str, reason: str = "") -> None:
        self.path = Path(path)
        self.expected = expected
        self.reason = reason
        detail = f" ({reason})" if reason else ""
        super().__init__(f"{self.path}: cannot read it as {expected}{detail}")


class RunLockedError(SpurmemError):
    """Another live process holds the lock of a run directory, comparison or output folder."""


class NumericalFaultError(SpurmemError):
    """Training produced a non-finite loss or non-finite weights; the message names epoch and step."""


class DistributedError(SpurmemError):
    """A data-parallel (torchrun) job cannot go on: its launch variables are inconsistent, or another rank
    failed (the message carries rank 0's error), or the gathered predictions do not cover a split."""


class MissingCheckpointError(SpurmemError, FileNotFoundError):
    """A run has no checkpoint for the asked epoch (pruned by its retention policy, or never trained);
    the message lists the epochs it kept."""


def one_line(exc: BaseException) -> str:
    """The error as one line: an OSError names its file; the lines of a multi-line message (a
    heading ending in ':' and its problems) are joined with '; '."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc) or type(exc).__name__
    out = ""
    for part in (p.strip() for p in text.splitlines() if p.strip()):
        out += ("" if not out else " " if out.endswith(":") else "; ") + part
    return out
