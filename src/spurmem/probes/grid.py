"""The settings of a probe grid, each with a stable id and its recorded seeds.

A :class:`Setting` is one scorer x size (k, or fraction p for ``weight-threshold``) x intervention
x sigma x scoring split x selected-from group x per-layer x normalisation x repeat. Random parts
(the ``random`` scorer, thinned ``weight-threshold``, ``reinit``/``noise``) are repeated and get
seeds derived from the config seed: the ``random`` scorer's draw depends only on the repeat, so the
k = 1 draw is nested in the k = 3 draw and every intervention sees the same random units (paired
controls).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from spurmem.config import ConfigError
from spurmem.data.schema import GroupDataset
from spurmem.probes.interventions import INTERVENTIONS
from spurmem.probes.scorers import SCORERS

# Setting fields that identify a configuration regardless of repeat and seeds.
KEY_FIELDS = ("scorer", "k", "fraction", "intervention", "sigma", "score_split", "selected_from", "per_layer",
              "normalise")


def derive_seed(base: int, *parts: Any) -> int:
    """A seed in [0, 2^31) determined by ``base`` and ``parts`` (stable across runs and platforms)."""
    text = "/".join(str(p) for p in (base, *parts))
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % (2**31)


@dataclass(frozen=True)
class Setting:
    scorer: str
    intervention: str
    k: int | None = None
    fraction: float | None = None
    sigma: float | None = None
    score_split: str | None = None
    selected_from: int | None = None
    per_layer: bool = False
    normalise: bool = False
    repeat: int = 0
    selection_seed: int | None = None
    intervention_seed: int | None = None

    @property
    def label(self) -> str:
        """A readable name of the configuration (the same for all its repeats)."""
        parts = [self.scorer]
        if self.selected_from is not None:
            parts[0] += f"[g{self.selected_from}@{self.score_split}]"
        elif self.score_split not in (None, "train"):
            parts[0] += f"[@{self.score_split}]"
        parts.append(f"k={self.k}" if self.fraction is None else f"p={self.fraction:g}")
        if self.per_layer:
            parts.append("per-layer")
        if self.normalise:
            parts.append("normalised")
        parts.append(self.intervention if self.sigma is None else f"{self.intervention}(sigma={self.sigma:g})")
        return " ".join(parts)

    def key(self) -> tuple:
        return tuple(getattr(self, f) for f in KEY_FIELDS)

    def setting_id(self, context: dict[str, Any]) -> str:
        """Stable id of this setting and repeat under ``context`` (the config fields that change results)."""
        payload = json.dumps({"setting": asdict(self), "context": context}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def expand_grid(config, dataset: GroupDataset) -> tuple[list[Setting], list[str]]:
    """All settings of ``config`` (a ProbeConfig) on ``dataset``, plus notes on combinations skipped
    because they cannot exist (an activation-space intervention on unstructured weights)."""
    scorers = list(config.scorers)
    unit_scorers = [s for s in scorers if not SCORERS[s].unstructured]
    if config.random_control and unit_scorers and "random" not in scorers:
        scorers.append("random")
    groups = list(range(dataset.n_groups)) if config.groups is None else list(config.groups)
    for g in groups:
        if not 0 <= g < dataset.n_groups:
            raise ConfigError(f"groups: group {g} is outside 0..{dataset.n_groups - 1}")
    minority = [g for g in groups if dataset.is_minority(g)]
    settings: list[Setting] = []
    skipped: list[str] = []
    for scorer in scorers:
        spec = SCORERS[scorer]
        if spec.per_group:
            from_groups = minority if scorer == "group-contrast" else groups
            if not from_groups:
                raise ConfigError(f"groups: {scorer} needs a minority group among {groups}")
            score_splits = list(config.splits)
        else:
            from_groups, score_splits = [None], [None]
        sizes = [("fraction", p) for p in config.fractions] if spec.unstructured else [("k", k) for k in config.k]
        per_layers = [False] if spec.unstructured else list(config.per_layer)
        normalises = [False] if spec.unstructured or spec.random else list(config.normalise)
        random_selection = spec.random or (spec.unstructured and config.thinning > 0)
        for intervention in config.interventions:
            ispec = INTERVENTIONS[intervention]
            if spec.unstructured and ispec.space == "activation":
                skipped.append(f"{scorer} x {intervention}: activation-space edits act on units, not single weights")
                continue
            sigmas = list(config.sigmas) if ispec.needs == "sigma" else [None]
            repeats = config.repeats if (random_selection or ispec.random) else 1
            for split in score_splits:
                for g in from_groups:
                    for size_field, size in sizes:
                        for sigma in sigmas:
                            for per_layer in per_layers:
                                for normalise in normalises:
                                    for r in range(repeats):
                                        settings.append(Setting(
                                            scorer=scorer, intervention=intervention, sigma=sigma,
                                            score_split=split, selected_from=g, per_layer=per_layer,
                                            normalise=normalise, repeat=r, **{size_field: size},
                                            selection_seed=derive_seed(config.seed, "select", scorer, r)
                                            if random_selection else None,
                                            intervention_seed=derive_seed(config.seed, "intervene", r)
                                            if ispec.random else None,
                                        ))
    return settings, skipped


def result_context(config) -> dict[str, Any]:
    """The config fields that change a setting's numbers besides the setting itself (part of its id)."""
    return {
        "epoch": config.epoch, "n_hardest": config.n_hardest, "contrast": config.contrast,
        "largest": config.largest, "thinning": config.thinning, "rewind_epochs": config.rewind_epochs,
        "layers": config.layers, "include_downsample": config.include_downsample,
        "eval_splits": list(config.eval_splits),
    }
