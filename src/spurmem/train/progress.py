"""Progress per epoch with the running loss and the last validation WGA.

On a terminal: a rich bar per epoch (kept on screen as the training log). Elsewhere (a log file,
CI): one plain line per finished epoch, since a live bar would only be drawn at the very end.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class EpochProgress:
    """A no-op when ``enabled`` is False."""

    def __init__(self, enabled: bool, total_epochs: int) -> None:
        self.enabled = enabled
        self.total_epochs = total_epochs
        self._console: Console | None = None
        self._progress: Progress | None = None
        self._task = None
        self._epoch = 0
        self._t0 = 0.0
        self._loss_sum, self._n = 0.0, 0
        self._val_wga: float | None = None

    def __enter__(self) -> "EpochProgress":
        if self.enabled:
            self._console = Console(stderr=False)
            if self._console.is_terminal:
                self._progress = Progress(
                    TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]}"), TextColumn("val WGA {task.fields[wga]}"),
                    TimeElapsedColumn(), console=self._console,
                )
                self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def start_epoch(self, epoch: int, steps: int) -> None:
        self._epoch, self._t0 = epoch, time.perf_counter()
        self._loss_sum, self._n = 0.0, 0
        if self._progress is not None:
            self._task = self._progress.add_task(
                f"epoch {epoch}/{self.total_epochs}", total=steps, loss="-", wga=self._fmt(self._val_wga))

    def step(self, loss: float) -> None:
        self._loss_sum += loss
        self._n += 1
        if self._progress is not None and self._n % 5 == 0:
            self._progress.update(self._task, advance=5, loss=f"{self._loss_sum / self._n:.4f}")

    def epoch_done(self, val_wga: float | None) -> None:
        self._val_wga = val_wga
        loss = f"{self._loss_sum / max(self._n, 1):.4f}"
        if self._progress is not None:
            total = self._progress.tasks[-1].total
            self._progress.update(self._task, completed=total, loss=loss, wga=self._fmt(val_wga))
        elif self._console is not None:
            self._console.print(f"epoch {self._epoch}/{self.total_epochs}  loss {loss}  val WGA {self._fmt(val_wga)}"
                                f"  {time.perf_counter() - self._t0:.1f} s", highlight=False)

    @staticmethod
    def _fmt(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}"
