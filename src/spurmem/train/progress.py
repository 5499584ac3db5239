"""A rich progress bar per epoch showing the running loss and the last validation WGA."""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class EpochProgress:
    """One bar per epoch (kept on screen as the training log); a no-op when ``enabled`` is False."""

    def __init__(self, enabled: bool, total_epochs: int) -> None:
        self.enabled = enabled
        self.total_epochs = total_epochs
        self._progress: Progress | None = None
        self._task = None
        self._loss_sum, self._n = 0.0, 0
        self._val_wga: float | None = None

    def __enter__(self) -> "EpochProgress":
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"), TextColumn("val WGA {task.fields[wga]}"),
                TimeElapsedColumn(),
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def start_epoch(self, epoch: int, steps: int) -> None:
        self._loss_sum, self._n = 0.0, 0
        if self._progress is not None:
            self._task = self._progress.add_task(
                f"epoch {epoch}/{self.total_epochs}", total=steps, loss="-", wga=self._fmt(self._val_wga))

    def step(self, loss: float) -> None:
        self._loss_sum += loss
        self._n += 1
        if self._progress is not None and (self._n % 5 == 0):
            self._progress.update(self._task, advance=5, loss=f"{self._loss_sum / self._n:.4f}")

    def epoch_done(self, val_wga: float | None) -> None:
        self._val_wga = val_wga
        if self._progress is not None:
            task = self._progress.tasks[-1]
            self._progress.update(self._task, completed=task.total, loss=f"{self._loss_sum / max(self._n, 1):.4f}",
                                  wga=self._fmt(val_wga))

    @staticmethod
    def _fmt(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}"
