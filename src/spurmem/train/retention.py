"""Which epoch checkpoints a run keeps (``checkpoints``, ``keep_every``, ``keep_epochs``, ``keep_rewind``).

``checkpoints: all`` keeps every epoch. ``checkpoints: retain`` (the default) keeps, after every epoch,

* epoch 0 (the initialisation) and every ``keep_every``-th epoch (0, N, 2N, ...; ``keep_every: 0``
  keeps none but epoch 0);
* the latest epoch and the one before it while it still has resume state (what ``--resume`` and
  its fallback past an unreadable newest epoch load: :func:`~spurmem.train.checkpoint.newest_good_epoch`);
* the epoch selected by the run's rule over the history so far, and the one selected over the
  history up to the resume fallback (a resume from the fallback goes back to that selection);
* the epochs listed in ``keep_epochs`` (e.g. JTT's identification epoch, a probe's rewind source);
* with ``keep_rewind: R``, the epoch R before the selected one (the probes' ``rewind`` source at
  ``rewind_epochs: R``) and, while training, the latest R epochs (a later epoch may still become the
  selected one, and its rewind source is among them).

Selection only ever moves to a later, strictly better epoch (ties go to the earliest), so an epoch
that is no longer selected never becomes selected again and may be deleted; the final selected
epoch is always kept. What the policy does not keep is deleted after every epoch, so the disk holds
at most the kept set plus one epoch at any time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

RETENTION_MODES = ("retain", "all")


@dataclass(frozen=True)
class Retention:
    """A run's checkpoint retention policy (from its TrainConfig)."""

    mode: str = "retain"
    keep_every: int = 5
    keep_epochs: tuple[int, ...] = ()
    keep_rewind: int = 0

    @classmethod
    def of(cls, config: Any) -> "Retention":
        return cls(config.checkpoints, config.keep_every, tuple(config.keep_epochs), config.keep_rewind)

    def describe(self) -> str:
        """E.g. ``checkpoints=retain keep_every=5 keep_epochs=[2]`` for error messages and run.json."""
        if self.mode == "all":
            return "checkpoints=all"
        text = f"checkpoints=retain keep_every={self.keep_every}"
        if self.keep_epochs:
            text += f" keep_epochs={list(self.keep_epochs)}"
        if self.keep_rewind:
            text += f" keep_rewind={self.keep_rewind}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoints": self.mode, "keep_every": self.keep_every, "keep_epochs": list(self.keep_epochs),
                "keep_rewind": self.keep_rewind}

    def kept(
        self,
        present: Sequence[int],
        latest: int,
        resumable: Sequence[int],
        selected: Sequence[int],
        finished: bool = False,
    ) -> set[int]:
        """The epochs of ``present`` to keep after epoch ``latest`` (``finished``: the last one).

        ``resumable``: epochs with resume state; ``selected``: the epochs the selection rule picks
        over the history so far and over the history up to the resume fallback.
        """
        have = set(present)
        if self.mode == "all":
            return have
        keep = {0, latest, *resumable[-2:], *selected, *self.keep_epochs}
        if self.keep_every:
            keep |= {e for e in have if e % self.keep_every == 0}
        if self.keep_rewind:
            keep |= {e - self.keep_rewind for e in selected}
            if not finished:
                keep |= {e for e in have if e > latest - self.keep_rewind}
        return keep & have
