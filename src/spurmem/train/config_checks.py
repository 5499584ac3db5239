"""Checks of a :class:`~spurmem.train.config.TrainConfig` that need no data, run before a run folder is
touched (``train``, ``--print-config``), and the augmentation a config names."""

from __future__ import annotations

from typing import Any

from spurmem.config import ConfigError
from spurmem.train.config import TrainConfig


def check_config(config: TrainConfig) -> None:
    """Checks that need no data (``train`` and ``--print-config`` run them): the algorithm, dataset and model
    exist and take the given ``*_params``, selection has its split, augmentation exists."""
    from spurmem.config import nearest_key
    from spurmem.data import check_dataset_params
    from spurmem.models import check_model_params
    from spurmem.train.algorithms import ALGORITHMS
    from spurmem.train.algorithms.params import parse_params

    if config.algorithm not in ALGORITHMS:
        near = nearest_key(config.algorithm, ALGORITHMS)
        raise ConfigError(f"unknown algorithm {config.algorithm!r}" + (f"; did you mean {near!r}?" if near else "")
                          + f" Known: {', '.join(ALGORITHMS)}")
    if not ALGORITHMS[config.algorithm].trains and (config.epochs != 0 or not config.init_from):
        raise ConfigError(f"algorithm {config.algorithm!r} only refits the head of a trained model: set epochs=0 and "
                          f"init_from=<an ERM run dir> (got epochs={config.epochs}, init_from={config.init_from!r})")
    params_cls = getattr(ALGORITHMS[config.algorithm], "Params", None)  # None: an algorithm without typed params
    if params_cls is not None:
        parse_params(params_cls, config.algorithm_params, config.algorithm)
    check_dataset_params(config.dataset, config.dataset_params)
    check_model_params(config.model, config.model_params)
    if config.selection != "last" and "val" not in config.eval_splits:
        raise ConfigError(f"selection={config.selection!r} needs 'val' in eval_splits (got {config.eval_splits})")
    resolve_augment(config.augment, config.augment_params)


def resolve_augment(name: str, params: dict[str, Any]):
    """The data layer's augmentation by name (``none`` -> no augmentation)."""
    from spurmem.data import DataError, build_augment

    try:
        return build_augment(name, **params)
    except (DataError, TypeError) as exc:
        raise ConfigError(f"augment={name!r} augment_params={params}: {exc}") from None
