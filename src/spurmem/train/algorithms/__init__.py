"""The ``ALGORITHMS`` registry: name -> :class:`~spurmem.train.algorithm.Algorithm` subclass.

Every algorithm runs in the one shared training loop (``spurmem.train.trainer``); it only defines the
batch loss, optional sampling weights and state to checkpoint. ``algorithm_params`` of the
``TrainConfig`` are passed to its constructor.
"""

from __future__ import annotations

from spurmem.train.algorithm import Algorithm

ALGORITHMS: dict[str, type[Algorithm]] = {
    "erm": Algorithm,
}

__all__ = ["ALGORITHMS", "Algorithm"]
