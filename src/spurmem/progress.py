"""One progress reporter for every long stage: training, probe grids, scans, caches, sweeps of jobs.

On a terminal it draws a live rich bar (nested stages stack in one display). Elsewhere (a log
file, a pipe, a batch job) it writes plain lines to stderr: one at the start (with the stage's
cost when the caller knows it), then at most every ``every`` seconds (the first as soon as a rate is
measured, within :data:`FIRST_LINE_S` seconds), and one at the end. Every line says the stage,
done/total, rate, elapsed time and ETA::

    [scan train] start: 0/17,056 units; cost: 17,056 units x 4,795 examples = 81.8M pairs
    [scan train] 1,234/17,056 units (7.2%), 3.10 units/s, elapsed 6m40s, ETA 1h25m
    [scan train] done: 17,056/17,056 units in 1h31m40s (3.10 units/s)

A sweep counts jobs the same way (``info`` names the job; the ETA is the measured time per job)::

    with Progress("sweep", len(jobs), unit="jobs", cost=f"{len(jobs)} runs x 30 epochs") as bar:
        for job in jobs:
            run(job)
            bar.advance(1, info=job.name)     # [sweep] 3/10 jobs (30.0%), 2.10 jobs/min, ..., ETA 3m20s - ...

Settings, process-wide: ``SPURMEM_NO_PROGRESS=1`` silences every reporter and
``SPURMEM_PROGRESS_EVERY=S`` sets the interval; :func:`configure` (the CLI's ``--no-progress`` and
``--progress-every S``) overrides both. A stage called with ``progress=False`` stays silent too.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from contextlib import contextmanager
from typing import IO, Any, Iterator

from spurmem.errors import SpurmemError

DEFAULT_EVERY = 30.0
FIRST_LINE_S = 5.0  # the first rate/ETA line comes this soon even when the interval is longer
_OFF = ("1", "true", "yes", "on")

_configured: dict[str, Any] = {}


def configure(*, enabled: bool | None = None, every: float | None = None) -> None:
    """Set the process-wide settings (they override the environment); None leaves one unchanged."""
    if every is not None and not (every >= 0 and math.isfinite(every)):
        raise SpurmemError(f"progress interval must be a number of seconds >= 0, got {every}")
    if enabled is not None:
        _configured["enabled"] = enabled
    if every is not None:
        _configured["every"] = float(every)


def reset() -> None:
    """Forget :func:`configure`'s settings (back to the environment's)."""
    _configured.clear()


def add_options(parser: argparse.ArgumentParser) -> None:
    """``--no-progress`` and ``--progress-every S`` on a command's parser (read by :func:`apply_options`).

    Their defaults are suppressed, so a sub-command's parser does not reset what was given before
    it, and an inner command call (the demo's stages) leaves the outer settings alone."""
    group = parser.add_argument_group("progress (stderr: a live bar on a terminal, plain lines elsewhere)")
    group.add_argument("--no-progress", action="store_true", default=argparse.SUPPRESS,
                       help="no progress output (also SPURMEM_NO_PROGRESS=1)")
    group.add_argument("--progress-every", type=float, metavar="S", default=argparse.SUPPRESS,
                       help="seconds between plain progress lines off a terminal (default 30; also "
                            "SPURMEM_PROGRESS_EVERY)")


@contextmanager
def options(args: argparse.Namespace) -> Iterator[None]:
    """:func:`configure` from the options :func:`add_options` parsed (only those given), for the
    duration of a command; the settings before it are restored after."""
    before = dict(_configured)
    try:
        configure(enabled=False if getattr(args, "no_progress", False) else None,
                  every=getattr(args, "progress_every", None))
        yield
    finally:
        _configured.clear()
        _configured.update(before)


def settings() -> tuple[bool, float]:
    """``(enabled, every)`` now: from :func:`configure`, else the environment, else the defaults."""
    enabled = _configured.get("enabled")
    if enabled is None:
        enabled = os.environ.get("SPURMEM_NO_PROGRESS", "").strip().lower() not in _OFF
    every = _configured.get("every")
    if every is None:
        text = os.environ.get("SPURMEM_PROGRESS_EVERY", "").strip()
        try:
            every = float(text) if text else DEFAULT_EVERY
        except ValueError:
            raise SpurmemError(f"SPURMEM_PROGRESS_EVERY={text!r} is not a number of seconds") from None
        if not (every >= 0 and math.isfinite(every)):
            raise SpurmemError(f"SPURMEM_PROGRESS_EVERY={text!r} must be >= 0 seconds")
    return enabled, every


class Progress:
    """``done`` of ``total`` ``unit`` of one ``stage`` (``total=None``: unknown, no ETA).

    Use as a context manager and call :meth:`advance`; :meth:`log` writes a line beside the bar.
    ``cost`` (text) goes into the start line. ``enabled=False`` (or the settings) makes every call
    a no-op; ``every`` and ``stream`` (default stderr) override the settings, ``terminal`` the
    stream's own answer to whether a live bar can be drawn.
    """

    def __init__(self, stage: str, total: float | None = None, *, unit: str = "items", cost: str | None = None,
                 enabled: bool = True, every: float | None = None, stream: IO[str] | None = None,
                 terminal: bool | None = None) -> None:
        on, default_every = settings()
        self.stage, self.total, self.unit, self.cost = stage, total, unit, cost
        self.enabled = bool(enabled and on)
        self.every = default_every if every is None else every
        self.stream = stream if stream is not None else sys.stderr
        self.done: float = 0
        self.info = ""
        self._t0 = self._last = time.perf_counter()
        self._lines = 0
        self._task = None
        self._closed = not self.enabled
        if not self.enabled:
            return
        is_tty = getattr(self.stream, "isatty", lambda: False)
        if terminal if terminal is not None else is_tty():
            self._task = _live_add(self)
            if cost:
                self.log(f"cost: {cost}")
        else:
            self._write(f"start: {self._count()}" + (f"; cost: {cost}" if cost else ""))

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, exc_type, *_) -> None:
        self.close(failed=exc_type is not None)

    def advance(self, n: float = 1, info: str | None = None) -> None:
        """Count ``n`` more done (0 only updates ``info``, a short status shown after the numbers)."""
        if self._closed:
            return
        self.done += n
        if info is not None:
            self.info = info
        if self._task is not None:
            _LIVE["bar"].update(self._task, completed=self.done, info=self.info)
            return
        now = time.perf_counter()
        due = self.every if self._lines else min(self.every, FIRST_LINE_S)
        if n and now - self._last >= due:
            self._write(self._status(now))
            self._last = now
            self._lines += 1

    def set_total(self, total: float | None) -> None:
        """Change the total (a stage that learns its size as it goes)."""
        self.total = total
        if self._task is not None:
            _LIVE["bar"].update(self._task, total=total)

    def log(self, text: str) -> None:
        """One line, on a terminal above the live bar."""
        if not self.enabled:
            return
        if self._task is not None:
            _LIVE["bar"].console.print(f"[{self.stage}] {text}", highlight=False, markup=False)
        else:
            self._write(text)

    def close(self, failed: bool = False) -> None:
        """The end line (``stopped`` for a failure or a stage that ends short of its total)."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            _live_remove(self._task)
            return
        elapsed = time.perf_counter() - self._t0
        short = failed or (self.total is not None and self.done < self.total)
        rate = f" ({_rate(self.done / elapsed, self.unit)})" if elapsed > 0 and self.done else ""
        self._write(f"{'stopped at' if short else 'done:'} {self._count()} in {_duration(elapsed)}{rate}")

    def _count(self) -> str:
        total = "?" if self.total is None else _number(self.total)
        return f"{_number(self.done)}/{total} {self.unit}"

    def _status(self, now: float) -> str:
        elapsed = now - self._t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        parts = [self._count() + (f" ({self.done / self.total:.1%})" if self.total else ""),
                 _rate(rate, self.unit), f"elapsed {_duration(elapsed)}"]
        if self.total is not None:
            parts.append(f"ETA {_duration(max(self.total - self.done, 0) / rate) if rate > 0 else '?'}")
        return ", ".join(parts) + (f" - {self.info}" if self.info else "")

    def _write(self, text: str) -> None:
        self.stream.write(f"[{self.stage}] {text}\n")
        self.stream.flush()


def _number(x: float) -> str:
    return f"{int(round(x)):,}" if abs(x - round(x)) < 1e-9 else f"{x:,.1f}"


def _rate(per_second: float, unit: str) -> str:
    if per_second >= 0.1 or per_second == 0:
        return f"{per_second:,.2f} {unit}/s"
    return f"{60 * per_second:,.2f} {unit}/min"


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def human(n: float) -> str:
    """``81,800,000`` as ``81.8M`` (for cost lines)."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.1f}{suffix}"
    return _number(n)


# -- the live display shared by every reporter on a terminal ------------------------------------

_LIVE: dict[str, Any] = {"bar": None, "users": 0}


def _live_add(reporter: Progress):
    if _LIVE["bar"] is None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress
        from rich.table import Column

        def text(fmt: str, width: int) -> TextColumn:
            return TextColumn(fmt, table_column=Column(max_width=width, no_wrap=True, overflow="ellipsis"))

        _LIVE["bar"] = RichProgress(
            text("[bold]{task.description}", 36), BarColumn(bar_width=16), MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            text("{task.fields[info]}", 32), console=Console(file=reporter.stream, force_terminal=True))
        _LIVE["bar"].start()
    _LIVE["users"] += 1
    return _LIVE["bar"].add_task(reporter.stage, total=reporter.total, unit=reporter.unit, info="")


def _live_remove(task) -> None:
    bar = _LIVE["bar"]
    task_ = next(t for t in bar.tasks if t.id == task)
    if task_.total is None:
        bar.update(task, total=task_.completed)
    _LIVE["users"] -= 1
    if _LIVE["users"] == 0:
        bar.stop()
        _LIVE["bar"] = None


__all__ = ["DEFAULT_EVERY", "Progress", "configure", "human", "reset", "settings"]
