"""``ProbeConfig``: the grid a probe runs (scorer x k x intervention x sigma x split x group).

Defaults are a grid that separates class collapse, group features and memorisation on the demo
small CNN in a few minutes on a CPU: gradient, contrast and weight-norm scorers, k in {1, 3, 10},
weight-space ``zero`` (the published reference) and activation-space ``mean-activation``, each
against the random control with the same k and intervention, evaluated on train, val and test.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from spurmem.registry import lookup
from spurmem.probes.verdicts import Thresholds

# The registries are imported inside the validators: they need torch, and `spurmem probe --help`
# (which lists this config's keys) should not.


class ProbeConfig(BaseModel):
    """One probe grid. Lists are grid axes; every combination is a setting."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("grid", description="output folder RUN_DIR/probes/<name>")
    epoch: Literal["selected", "last"] | int = Field("selected", description="which checkpoint of the run to probe")
    scorers: list[str] = Field(default_factory=lambda: ["group-gradient", "group-contrast", "weight-norm"],
                               description="scorers to rank units with (SCORERS)")
    k: list[int] = Field(default_factory=lambda: [1, 3, 10], description="units edited (unit scorers)")
    fractions: list[float] = Field(default_factory=lambda: [0.01], description="weight-threshold: fraction p")
    largest: bool = Field(True, description="weight-threshold: the largest |w| (false: the smallest)")
    thinning: float = Field(0.0, ge=0, lt=1, description="weight-threshold: drop each selected weight w.p. d")
    interventions: list[str] = Field(default_factory=lambda: ["zero", "mean-activation"],
                                     description="edits applied to the selected units (INTERVENTIONS)")
    sigmas: list[float] = Field(default_factory=lambda: [0.1], description="reinit/noise standard deviations")
    rewind_epochs: int = Field(5, ge=1, description="rewind: copy from the checkpoint this many epochs earlier")
    splits: list[str] = Field(default_factory=lambda: ["train"], description="split the scorers rank on")
    groups: list[int] | None = Field(None, description="selected-from groups of per-group scorers (null: all; "
                                                        "minority groups for group-contrast)")
    n_hardest: int = Field(200, ge=1, description="group-gradient: K hardest examples per group")
    contrast: Literal["difference", "ratio"] = Field("difference", description="group-contrast: minority minus "
                                                     "or divided by same-class majority")
    per_layer: list[bool] = Field(default_factory=lambda: [False], description="top k per layer instead of global")
    normalise: list[bool] = Field(default_factory=lambda: [False], description="per-layer median normalisation")
    layers: list[str] | None = Field(None, description="candidate layers by name (null: the default rule)")
    include_downsample: bool = Field(False, description="residual downsample convs are candidates too")
    repeats: int = Field(10, ge=1, description="repeats of random scorers/interventions (seeds recorded)")
    random_control: bool = Field(True, description="add the random scorer for every k/intervention/sigma")
    seed: int = Field(0, description="base seed; every repeat's seeds derive from it and are recorded")
    eval_splits: list[str] = Field(default_factory=lambda: ["train", "val", "test"],
                                   description="splits evaluated before and after every edit")
    heldout_split: str = Field("test", description="held-out split the verdicts compare with train")
    thresholds: Thresholds = Field(default_factory=Thresholds, description="verdict thresholds (docs/method.md §5.4-5.5)")
    batch_size: int = Field(512, ge=1, description="evaluation batch size")
    device: str = Field("auto", description="auto, cpu or cuda[:N]")

    @field_validator("scorers")
    @classmethod
    def _scorers(cls, v: list[str]) -> list[str]:
        from spurmem.probes.scorers import SCORERS

        return [_known(s, SCORERS, "scorer") for s in v]

    @field_validator("interventions")
    @classmethod
    def _interventions(cls, v: list[str]) -> list[str]:
        from spurmem.probes.interventions import INTERVENTIONS

        return [_known(s, INTERVENTIONS, "intervention") for s in v]

    @field_validator("k")
    @classmethod
    def _k(cls, v: list[int]) -> list[int]:
        if any(k < 1 for k in v):
            raise ValueError("every k must be >= 1")
        return v

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        if any(not 0 < p <= 1 for p in v):
            raise ValueError("every fraction must be in (0, 1]")
        return v

    @field_validator("sigmas")
    @classmethod
    def _sigmas(cls, v: list[float]) -> list[float]:
        if any(s < 0 for s in v):
            raise ValueError("sigmas must be >= 0")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v or "/" in v or v.startswith("."):
            raise ValueError("name must be a non-empty file name (no '/'); it names RUN_DIR/probes/<name>")
        return v

    @model_validator(mode="after")
    def _splits(self) -> "ProbeConfig":
        if "train" not in self.eval_splits:
            raise ValueError("eval_splits must include train (every verdict compares train with held-out)")
        if self.heldout_split not in self.eval_splits:
            raise ValueError(f"heldout_split {self.heldout_split!r} must be one of eval_splits {self.eval_splits}")
        from spurmem.probes.scorers import CONTRASTS

        if self.contrast not in CONTRASTS:
            raise ValueError(f"contrast must be one of {CONTRASTS}")
        return self


def _known(name: str, registry: dict, what: str) -> str:
    lookup(registry, name, what, error=ValueError)
    return name
