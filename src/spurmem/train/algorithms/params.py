"""Typed hyper-parameters of an algorithm (``algorithm_params`` in a TrainConfig).

Each algorithm declares a pydantic model; unknown keys and wrong types raise ConfigError naming the
key, what was expected, and the nearest valid key.
"""

from __future__ import annotations

import difflib
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from spurmem.config import ConfigError

P = TypeVar("P", bound=BaseModel)


class AlgorithmParams(BaseModel):
    """Base for every algorithm's parameters: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_params(params_cls: type[P], hparams: dict[str, Any], algorithm: str) -> P:
    """Validate ``hparams`` against ``params_cls``; errors name ``algorithm_params.<key>``."""
    try:
        return params_cls(**hparams)
    except ValidationError as exc:
        fields = params_cls.model_fields
        valid = sorted(f.alias or name for name, f in fields.items())
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "?"
            if err["type"] == "extra_forbidden":
                near = difflib.get_close_matches(key, valid, n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                problems.append(f"unknown key {key!r}{hint} (valid: {', '.join(valid)})")
            else:
                problems.append(f"{key}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError(f"algorithm {algorithm!r}: algorithm_params: " + "; ".join(problems)) from None
