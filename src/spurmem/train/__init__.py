"""Training: the one shared loop, run directories, checkpoints, resume and model selection.

Public API: :class:`TrainConfig`, :func:`train` -> :class:`TrainResult`, :func:`load_run` ->
:class:`LoadedRun`, :func:`list_epochs`, :func:`load_epoch_weights`, :func:`select_epoch`, and the
``ALGORITHMS`` registry (``spurmem.train.algorithms``).
"""

from __future__ import annotations

from spurmem.train.algorithm import Algorithm
from spurmem.train.checkpoint import list_epochs, load_epoch_weights
from spurmem.train.config import SELECTION_RULES, TrainConfig
from spurmem.train.run import LoadedRun, load_run, read_config, read_history, read_info, resolve_epoch
from spurmem.train.selection import Selection, select_epoch
from spurmem.train.trainer import TrainResult, train


def __getattr__(name: str):
    if name == "ALGORITHMS":  # imported lazily: algorithm modules import from spurmem.train
        from spurmem.train.algorithms import ALGORITHMS

        return ALGORITHMS
    raise AttributeError(name)


__all__ = [
    "ALGORITHMS", "Algorithm", "LoadedRun", "SELECTION_RULES", "Selection", "TrainConfig", "TrainResult",
    "list_epochs", "load_epoch_weights", "load_run", "read_config", "read_history", "read_info",
    "resolve_epoch", "select_epoch", "train",
]
