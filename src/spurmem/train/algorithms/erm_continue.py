"""``erm-continue``: plain cross-entropy fine-tuning from an ERM checkpoint (docs/method.md §7's control).

It is ERM's loss under another name so that a comparison can give it exactly the framework's
start (``init_from``), optimiser, schedule and epoch budget: whatever the framework gains over
``erm-continue`` is due to its loss, not to more training.
"""

from __future__ import annotations

from typing import Any

from spurmem.data.schema import GroupDataset
from spurmem.train.algorithm import Algorithm
from spurmem.train.algorithms.params import AlgorithmParams, parse_params


class ERMContinueParams(AlgorithmParams):
    """No parameters: the control differs from ERM only in its start and its optimisation settings."""


class ERMContinue(Algorithm):
    """Mean cross-entropy, meant to be run with ``init_from`` an ERM run."""

    name = "erm-continue"
    group_labels = "none"
    labels_note = "training class labels"
    Params = ERMContinueParams

    def __init__(self, dataset: GroupDataset, **hparams: Any) -> None:
        super().__init__(dataset, **hparams)
        self.params = parse_params(ERMContinueParams, hparams, self.name)
