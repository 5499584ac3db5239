"""The hyper-parameter registry: defaults per algorithm and dataset, and seeded random search.

``HPARAMS[algorithm]["*"]`` holds an algorithm's defaults; ``HPARAMS[algorithm][dataset]`` overrides
them for one dataset. Each entry has ``train`` (TrainConfig fields: lr, schedule, ...) and ``params``
(the algorithm's ``algorithm_params``). ``SEARCH_SPACES[algorithm]`` says what a random search may
vary, each key as ``train.<field>`` or ``params.<name>``. ``FINE_TUNES`` names the algorithms that
start from an ERM run (``init_from``) instead of from scratch; ``POST_HOC`` those of them that only
refit its head (0 epochs).
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass, field
from typing import Any

from spurmem.config import ConfigError, nearest_key

# The published optimisation of the framework (docs/method.md §6), shared by its plain-CE control.
FRAMEWORK_TRAIN = dict(
    optimizer="adam", lr=2e-4, weight_decay=0.0, batch_size=100, epochs=21,
    schedule="plateau", plateau_factor=0.5, plateau_patience=1,
)

HPARAMS: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
    # ERM: the TrainConfig defaults are the reference recipe of docs/method.md §9.
    "erm": {"*": {"train": {}, "params": {}}},
    "erm-continue": {"*": {"train": dict(FRAMEWORK_TRAIN), "params": {}}},
    "spurmem": {"*": {"train": dict(FRAMEWORK_TRAIN), "params": {}}},
    "reweight": {"*": {"train": {}, "params": {"mode": "sample"}}},
    "groupdro": {"*": {"train": {}, "params": {"eta": 0.01, "size_adjustment": 0.0}}},
    "jtt": {
        "*": {"train": {}, "params": {"identification_epoch": 1, "lambda_up": 20.0}},
        # minority training examples are fitted by about epoch 12 of the reference ERM run; stage 1
        # must stop well before that so that its errors are still mostly minority examples
        "fashion-waterbirds": {"train": {}, "params": {"identification_epoch": 2, "lambda_up": 20.0}},
    },
    # DFR trains nothing: it refits the head of the ERM model in setup (epochs=0)
    "dfr": {"*": {"train": {"epochs": 0}, "params": {}}},
    # NeuronTune, like DFR, only refits the head (without group labels)
    "neurontune": {"*": {"train": {"epochs": 0}, "params": {}}},
}

FINE_TUNES = frozenset({"erm-continue", "spurmem", "dfr", "neurontune"})
POST_HOC = frozenset({"dfr", "neurontune"})  # refit the head of the ERM model: 0 epochs
NEEDS_STAGE1 = frozenset({"jtt"})  # uses an ERM run's early checkpoint to find its error set


@dataclass(frozen=True)
class Choice:
    values: tuple[Any, ...]

    def sample(self, rng: random.Random) -> Any:
        return rng.choice(self.values)


@dataclass(frozen=True)
class LogUniform:
    low: float
    high: float

    def sample(self, rng: random.Random) -> float:
        return float(f"{math.exp(rng.uniform(math.log(self.low), math.log(self.high))):.3g}")


WD = Choice((0.0, 1e-4, 1e-3))
SEARCH_SPACES: dict[str, dict[str, Choice | LogUniform]] = {
    "erm": {"train.lr": LogUniform(1e-4, 3e-3), "train.weight_decay": WD},
    "erm-continue": {"train.lr": LogUniform(5e-5, 1e-3), "train.weight_decay": WD},
    "reweight": {"train.lr": LogUniform(1e-4, 3e-3), "train.weight_decay": WD, "params.mode": Choice(("sample", "loss"))},
    "groupdro": {
        "train.lr": LogUniform(1e-4, 3e-3), "train.weight_decay": WD,
        "params.eta": LogUniform(1e-3, 1e-1), "params.size_adjustment": Choice((0.0, 1.0, 2.0, 4.0)),
    },
    "jtt": {
        "train.lr": LogUniform(1e-4, 3e-3),
        "params.identification_epoch": Choice((1, 2, 3, 5)), "params.lambda_up": Choice((5.0, 10.0, 20.0, 50.0, 100.0)),
    },
    "dfr": {},  # C is tuned inside the algorithm on half of the validation split
    "neurontune": {},  # it refits on the validation split, so val selection cannot tune it without a leak
    "spurmem": {
        "train.lr": LogUniform(5e-5, 1e-3),
        "params.tau": Choice((0.1, 0.2, 0.5, 1.0)), "params.lambda": LogUniform(0.05, 2.0),
        "params.fraction": Choice((0.005, 0.01, 0.05, 0.1)),
        "params.contrast_on": Choice(("probabilities", "logits", "features")),
    },
}


@dataclass
class HParams:
    """One setting of an algorithm: TrainConfig overrides and algorithm_params."""

    train: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    def merged(self, other: "HParams") -> "HParams":
        return HParams({**self.train, **other.train}, {**self.params, **other.params})

    def to_dict(self) -> dict[str, Any]:
        return {"train": dict(self.train), "params": dict(self.params)}


def _known(algorithm: str) -> None:
    if algorithm not in HPARAMS:
        near = nearest_key(algorithm, HPARAMS)
        hint = f"; did you mean {near!r}?" if near else ""
        raise ConfigError(f"no hyper-parameters registered for algorithm {algorithm!r}{hint} Known: {', '.join(HPARAMS)}")


def defaults(algorithm: str, dataset: str) -> HParams:
    """The registered defaults of ``algorithm``, with ``dataset``'s overrides applied."""
    _known(algorithm)
    table = HPARAMS[algorithm]
    base = HParams(**copy.deepcopy(table["*"]))
    if dataset in table:
        base = base.merged(HParams(**copy.deepcopy(table[dataset])))
    return base


def from_overrides(values: dict[str, Any], where: str) -> HParams:
    """User overrides ``{"lr": 1e-4, "params": {...}}`` or dotted ``{"params.tau": 0.2}`` -> HParams.
    Plain keys are TrainConfig fields; ``params`` / ``algorithm_params`` hold the algorithm's."""
    out = HParams()
    for key, value in values.items():
        if key in ("params", "algorithm_params"):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}.{key}: expected a mapping of algorithm parameters, got {value!r}")
            out.params.update(value)
        elif key.startswith(("params.", "algorithm_params.")):
            out.params[key.split(".", 1)[1]] = value
        else:
            out.train[key.removeprefix("train.")] = value
    return out


def sample(algorithm: str, rng: random.Random) -> HParams:
    """One random draw from ``algorithm``'s search space (empty when it has none)."""
    _known(algorithm)
    out = HParams()
    for key, dist in SEARCH_SPACES.get(algorithm, {}).items():
        kind, name = key.split(".", 1)
        (out.train if kind == "train" else out.params)[name] = dist.sample(rng)
    return out


def search_draws(algorithm: str, trials: int, seed: int) -> list[HParams]:
    """``trials`` seeded draws for ``algorithm`` (the same seed gives the same draws)."""
    rng = random.Random(f"{algorithm}:{seed}")
    if not SEARCH_SPACES.get(algorithm):
        return []
    return [sample(algorithm, rng) for _ in range(trials)]
