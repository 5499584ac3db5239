"""``erm``: empirical risk minimisation, the mean cross-entropy of the base :class:`Algorithm`."""

from __future__ import annotations

from typing import Any

from spurmem.data.schema import GroupDataset
from spurmem.train.algorithm import Algorithm
from spurmem.train.algorithms.params import AlgorithmParams, parse_params


class ERMParams(AlgorithmParams):
    """No parameters; any ``algorithm_params`` key is an error rather than silently ignored."""


class ERM(Algorithm):
    name = "erm"
    group_labels = "none"
    labels_note = "training class labels"
    Params = ERMParams

    def __init__(self, dataset: GroupDataset, **hparams: Any) -> None:
        super().__init__(dataset, **hparams)
        self.params = parse_params(ERMParams, hparams, self.name)
