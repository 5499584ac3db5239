"""Training: the one shared loop, run directories, checkpoints, resume and model selection.

Public API: :class:`TrainConfig`, :func:`train` -> :class:`TrainResult`, :func:`load_run` ->
:class:`LoadedRun`, :func:`list_epochs`, :func:`load_epoch_weights`, :func:`select_epoch`, and the
``ALGORITHMS`` registry (``spurmem.train.algorithms``).
"""

from __future__ import annotations

from spurmem.lazy import lazy_exports

_EXPORTS = {
    "ALGORITHMS": "spurmem.train.algorithms",
    "Algorithm": "spurmem.train.algorithm",
    "list_epochs": "spurmem.train.checkpoint",
    "load_epoch_weights": "spurmem.train.checkpoint",
    "SELECTION_RULES": "spurmem.train.config",
    "TrainConfig": "spurmem.train.config",
    "LoadedRun": "spurmem.train.run",
    "load_run": "spurmem.train.run",
    "read_config": "spurmem.train.run",
    "read_history": "spurmem.train.run",
    "read_info": "spurmem.train.run",
    "resolve_epoch": "spurmem.train.run",
    "Selection": "spurmem.train.selection",
    "select_epoch": "spurmem.train.selection",
    "TrainResult": "spurmem.train.trainer",
    "train": "spurmem.train.trainer",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
