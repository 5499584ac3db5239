"""``spurmem mitigate RUN_DIR``: fine-tune the framework (or its plain-CE control) from an ERM run.

The new run inherits the ERM run's dataset, model and seed, takes the registry's defaults for the
algorithm (the published optimisation of docs/method.md §6), and starts from the ERM run's checkpoint.
``key=value`` overrides go to the TrainConfig when the key is one of its fields and to the
algorithm's parameters otherwise (``params.KEY`` forces the latter).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from spurmem.config import ConfigError, nearest_key, parse_override, validate_config
from spurmem.train import hparams as registry
from spurmem.train.config import TrainConfig

FINE_TUNING = ("spurmem", "erm-continue")
INHERITED = ("dataset", "dataset_params", "model", "model_params", "seed", "device", "eval_splits",
             "eval_batch_size", "selection", "amp", "channels_last", "workers")


def _param_names(algorithm: str) -> set[str]:
    from spurmem.train.algorithms import ALGORITHMS

    params_cls = getattr(ALGORITHMS[algorithm], "Params", None)
    if params_cls is None:
        return set()
    return {f.alias or name for name, f in params_cls.model_fields.items()} | set(params_cls.model_fields)


def mitigation_config(
    source_run: str | Path, overrides: Sequence[str] = (), init_epoch: str | int = "last", name: str | None = None
) -> TrainConfig:
    """The TrainConfig of a fine-tuning run from ``source_run`` (see the module docstring)."""
    from spurmem.train.run import read_config

    source = read_config(source_run)
    parsed = [parse_override(item) for item in overrides]
    algorithm = next((v for k, v in parsed if k == "algorithm"), "spurmem")
    if algorithm not in FINE_TUNING:
        raise ConfigError(f"override 'algorithm={algorithm}': mitigate runs one of {', '.join(FINE_TUNING)}")
    h = registry.defaults(algorithm, source.dataset)
    fields: dict[str, Any] = {k: getattr(source, k) for k in INHERITED}
    fields.update(h.train)
    params = dict(h.params)
    train_keys = set(TrainConfig.model_fields)
    param_keys = _param_names(algorithm)
    for (key, value), item in zip(parsed, overrides):
        if key == "algorithm":
            continue
        head = key.split(".", 1)[0]
        if key.startswith(("params.", "algorithm_params.")):
            params[key.split(".", 1)[1]] = value
        elif key in param_keys:
            params[key] = value
        elif head in train_keys:
            if "." in key:  # e.g. dataset_params.rho=0.9
                fields[head] = {**(fields.get(head) or {}), key.split(".", 1)[1]: value}
            else:
                fields[key] = value
        else:
            near = nearest_key(key, train_keys | param_keys)
            raise ConfigError(f"override {item!r}: {key!r} is neither a TrainConfig field nor a parameter of "
                              f"{algorithm!r}" + (f"; did you mean {near!r}?" if near else ""))
    fields.update(algorithm=algorithm, algorithm_params=params, init_from=str(source_run), init_epoch=init_epoch)
    fields.setdefault("name", name or f"{source.name}-{algorithm}")
    if name:
        fields["name"] = name
    return validate_config(TrainConfig, fields, source=f"mitigate {source_run}")
