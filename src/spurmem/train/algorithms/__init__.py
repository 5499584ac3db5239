"""The ``ALGORITHMS`` registry: name -> :class:`~spurmem.train.algorithm.Algorithm` subclass.

Every algorithm runs in the one shared training loop (``spurmem.train.trainer``); it only defines the
batch loss, optional sampling weights and state to checkpoint. ``algorithm_params`` of the
``TrainConfig`` are passed to its constructor.
"""

from __future__ import annotations

from spurmem.train.algorithm import Algorithm
from spurmem.train.algorithms.dfr import DFR
from spurmem.train.algorithms.erm import ERM
from spurmem.train.algorithms.erm_continue import ERMContinue
from spurmem.train.algorithms.framework import SpurMemFramework
from spurmem.train.algorithms.groupdro import GroupDRO
from spurmem.train.algorithms.jtt import JTT
from spurmem.train.algorithms.neurontune import NeuronTune
from spurmem.train.algorithms.reweight import Reweight

ALGORITHMS: dict[str, type[Algorithm]] = {
    "erm": ERM,
    "erm-continue": ERMContinue,
    "reweight": Reweight,
    "groupdro": GroupDRO,
    "jtt": JTT,
    "dfr": DFR,
    "neurontune": NeuronTune,
    "spurmem": SpurMemFramework,
}

__all__ = ["ALGORITHMS", "Algorithm"]
