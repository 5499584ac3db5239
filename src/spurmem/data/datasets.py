"""The ``DATASETS`` registry: name -> loader returning a :class:`~spurmem.data.schema.GroupDataset`."""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable

from spurmem.registry import lookup
from spurmem.data.celeba import load_celeba
from spurmem.data.colored_digits import load_colored_digits
from spurmem.data.fashion_waterbirds import load_fashion_waterbirds
from spurmem.data.metadata_csv import load_metadata_csv
from spurmem.data.schema import DataError, GroupDataset
from spurmem.data.synthetic_shapes import load_synthetic_shapes
from spurmem.data.waterbirds import load_waterbirds

DATASETS: dict[str, Callable[..., GroupDataset]] = {
    "fashion-waterbirds": load_fashion_waterbirds,
    "synthetic-shapes": load_synthetic_shapes,
    "colored-digits": load_colored_digits,
    "waterbirds": load_waterbirds,
    "celeba": load_celeba,
    "metadata-csv": load_metadata_csv,
}


def dataset_parameters(name: str) -> dict[str, Any]:
    """The parameters of dataset ``name`` and their defaults (``inspect.Parameter.empty`` when none)."""
    loader = lookup(DATASETS, name, "dataset", error=DataError)
    return {k: p.default for k, p in inspect.signature(loader).parameters.items()}


def check_dataset_params(name: str, params: dict[str, Any]) -> None:
    """DataError naming the first key of ``params`` that dataset ``name`` does not take, and the nearest one."""
    accepted = dataset_parameters(name)
    for key in params:
        if key not in accepted:
            near = difflib.get_close_matches(key, accepted, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise DataError(f"dataset {name!r} has no parameter {key!r}{hint}. Parameters: {', '.join(accepted)}")


def load_dataset(name: str, **params: Any) -> GroupDataset:
    """Build the dataset registered as ``name`` with keyword ``params`` (unknown keys are errors)."""
    check_dataset_params(name, params)
    return DATASETS[name](**params)
