"""Scorers (docs/method.md §4): rank units by how much they matter, as a tidy table.

Every scorer fills one score per unit of each candidate layer; :func:`score_units` turns that into a
ranked table (``rank, unit, layer, index, score, raw_score`` plus how it was made), optionally after
per-layer median normalisation, and :func:`top_units` picks the global (or per-layer) top k.

* ``weight-norm``     L2 norm of the unit's slice ``[W[c], b[c]]``
* ``group-gradient``  L2 norm of the gradient of the mean cross-entropy of group g's K hardest
  examples (lowest p(true class) on the split; default K = 200) w.r.t. the unit's slice
* ``group-contrast``  ``group-gradient`` on a minority group minus (or divided by) the same score on
  the majority group of its class: units that matter for the minority and not for the whole class
* ``weight-threshold`` unstructured: the top (or bottom) fraction p of all individual weights by |w|,
  each kept with probability 1 - d; a unit's score is how many of its weights were selected
  (:func:`select_weights` gives the selection itself)
* ``random``          a uniform draw per unit, so the top k is k random units; fresh per seed
* ``activation``      mean |output| of the unit (after normalisation) on group g's examples

Gradients are taken with the model in eval mode (BatchNorm uses its running statistics, as at
evaluation) through ``torch.autograd.grad``, so the caller's ``.grad`` fields are untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from spurmem.registry import lookup
from spurmem.data.batches import iterate_batches
from spurmem.data.schema import GroupDataset
from spurmem.device import resolve_device
from spurmem.metrics import Predictions, predict
from spurmem.probes.activations import layer_activation_stats
from spurmem.probes.units import Layer, Unit, WeightSelection, candidate_layers, get_module

CONTRASTS = ("difference", "ratio")


@dataclass
class ScoreContext:
    """Everything a scorer may use. ``predictions`` caches per-split predictions between calls."""

    model: nn.Module
    dataset: GroupDataset
    layers: list[Layer]
    split: str = "train"
    group: int | None = None
    n_hardest: int = 200
    contrast: str = "difference"
    fraction: float = 0.01
    largest: bool = True
    thinning: float = 0.0
    seed: int = 0
    batch_size: int = 256
    device: str | torch.device = "auto"
    predictions: dict[str, Predictions] = field(default_factory=dict)

    def predictions_on(self, split: str) -> Predictions:
        if split not in self.predictions:
            self.predictions[split] = predict(self.model, self.dataset, split, self.batch_size, self.device)
        return self.predictions[split]


@dataclass(frozen=True)
class Scorer:
    """A registered scorer: ``per_group`` ones need ``group``; ``random`` ones are repeated with seeds;
    ``unstructured`` ones select individual weights rather than units."""

    name: str
    fn: Callable[[ScoreContext], dict[str, torch.Tensor]]
    per_group: bool
    random: bool
    unstructured: bool
    description: str


def _slice_norms(weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    sq = weight.detach().double().flatten(1).pow(2).sum(dim=1)
    if bias is not None:
        sq = sq + bias.detach().double().pow(2)
    return sq.sqrt().float().cpu()


def weight_norm_scores(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    out = {}
    for layer in ctx.layers:
        m = get_module(ctx.model, layer.name)
        out[layer.name] = _slice_norms(m.weight, m.bias)
    return out


def hardest_examples(ctx: ScoreContext, group: int) -> torch.Tensor:
    """Indices (into the split) of group ``group``'s ``n_hardest`` examples with the lowest
    predicted probability of their true class (all of them if fewer); ties by position."""
    pred = ctx.predictions_on(ctx.split)
    members = np.flatnonzero(pred.group == group)
    if len(members) == 0:
        raise ValueError(f"group {group} has no examples in split {ctx.split!r}")
    order = members[np.argsort(pred.p_true[members], kind="stable")][: ctx.n_hardest]
    # Predictions hold rows in split order (predict iterates without shuffling): row == split index.
    return torch.as_tensor(np.sort(order), dtype=torch.long)


def gradient_scores_for(ctx: ScoreContext, group: int) -> dict[str, torch.Tensor]:
    """Per-unit gradient norm of the mean CE of ``group``'s hardest examples (docs/method.md §4)."""
    model, dev = ctx.model, resolve_device(ctx.device)
    idx = hardest_examples(ctx, group)
    modules = [get_module(model, layer.name) for layer in ctx.layers]
    params = [p for m in modules for p in (m.weight, m.bias) if p is not None]
    flags = [p.requires_grad for p in params]
    grads = [torch.zeros_like(p) for p in params]
    was_training = model.training
    model.eval()
    try:
        for p in params:
            p.requires_grad_(True)
        for batch in iterate_batches(ctx.dataset[ctx.split], ctx.batch_size, ctx.dataset.mean,
                                     ctx.dataset.std, indices=idx):
            loss = F.cross_entropy(model(batch.x.to(dev)), batch.y.to(dev), reduction="sum") / len(idx)
            for acc, g in zip(grads, torch.autograd.grad(loss, params)):
                acc += g
    finally:
        model.train(was_training)
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
    out, i = {}, 0
    for layer, m in zip(ctx.layers, modules):
        gw = grads[i]
        gb = grads[i + 1] if m.bias is not None else None
        i += 2 if m.bias is not None else 1
        out[layer.name] = _slice_norms(gw, gb)
    return out


def group_gradient_scores(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    return gradient_scores_for(ctx, _require_group(ctx))


def group_contrast_scores(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    g = _require_group(ctx)
    if not ctx.dataset.is_minority(g):
        raise ValueError(
            f"group-contrast compares a minority group with its class's majority; group {g} "
            f"({ctx.dataset.group_names[g]}) is not a minority group (minority: {ctx.dataset.minority_groups})"
        )
    if ctx.contrast not in CONTRASTS:
        raise ValueError(f"contrast must be one of {CONTRASTS}, got {ctx.contrast!r}")
    minority = gradient_scores_for(ctx, g)
    majority = gradient_scores_for(ctx, ctx.dataset.same_class_majority(g))
    if ctx.contrast == "difference":
        return {k: minority[k] - majority[k] for k in minority}
    return {k: minority[k] / (majority[k] + 1e-12) for k in minority}


def activation_scores(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    g = _require_group(ctx)
    members = torch.nonzero(ctx.dataset[ctx.split].group == g).flatten()
    if len(members) == 0:
        raise ValueError(f"group {g} has no examples in split {ctx.split!r}")
    return layer_activation_stats(ctx.model, ctx.dataset, [l.name for l in ctx.layers], split=ctx.split,
                                  stat="mean-abs", indices=members, batch_size=ctx.batch_size, device=ctx.device)


def random_scores(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(int(ctx.seed))
    return {layer.name: torch.rand(layer.n_units, generator=gen) for layer in ctx.layers}


def select_weights(
    model: nn.Module,
    layers: list[Layer],
    fraction: float,
    largest: bool = True,
    thinning: float = 0.0,
    seed: int = 0,
) -> WeightSelection:
    """The top (``largest``) or bottom fraction ``fraction`` of all individual weights of ``layers``
    ranked jointly by |w|, each then kept with probability ``1 - thinning`` (seeded)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if not 0.0 <= thinning < 1.0:
        raise ValueError(f"thinning must be in [0, 1), got {thinning}")
    weights = [get_module(model, l.name).weight.detach() for l in layers]
    flat = torch.cat([w.abs().flatten().float().cpu() for w in weights])
    n = max(1, int(round(fraction * flat.numel())))
    # a stable sort makes ties (e.g. zeros) resolve by position, so the selection is deterministic
    order = torch.sort(flat, descending=largest, stable=True).indices[:n]
    chosen = torch.zeros(flat.numel(), dtype=torch.bool)
    chosen[order] = True
    if thinning > 0:
        keep = torch.rand(flat.numel(), generator=torch.Generator().manual_seed(int(seed))) >= thinning
        chosen &= keep
    masks, start = {}, 0
    for l, w in zip(layers, weights):
        masks[l.name] = chosen[start : start + w.numel()].view(w.shape).to(w.device)
        start += w.numel()
    return WeightSelection(masks)


def weight_threshold_scores(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    sel = select_weights(ctx.model, ctx.layers, ctx.fraction, ctx.largest, ctx.thinning, ctx.seed)
    return {name: m.flatten(1).sum(dim=1).float().cpu() for name, m in sel.masks.items()}


def _require_group(ctx: ScoreContext) -> int:
    if ctx.group is None:
        raise ValueError("this scorer is per group: pass group=")
    if not 0 <= ctx.group < ctx.dataset.n_groups:
        raise ValueError(f"group {ctx.group} is outside 0..{ctx.dataset.n_groups - 1}")
    return int(ctx.group)


SCORERS: dict[str, Scorer] = {
    "weight-norm": Scorer("weight-norm", weight_norm_scores, False, False, False,
                          "L2 norm of the unit's weight slice"),
    "group-gradient": Scorer("group-gradient", group_gradient_scores, True, False, False,
                             "gradient norm of the mean CE of group g's K hardest examples"),
    "group-contrast": Scorer("group-contrast", group_contrast_scores, True, False, False,
                             "group-gradient on minority g minus that on its class's majority"),
    "weight-threshold": Scorer("weight-threshold", weight_threshold_scores, False, False, True,
                               "top/bottom fraction p of individual weights by |w|, thinned by d"),
    "random": Scorer("random", random_scores, False, True, False, "k units drawn uniformly (the control)"),
    "activation": Scorer("activation", activation_scores, True, False, False,
                         "mean |activation| after normalisation on group g's examples"),
}


def get_scorer(name: str) -> Scorer:
    return lookup(SCORERS, name, "scorer")


def score_units(
    model: nn.Module,
    dataset: GroupDataset,
    scorer: str,
    *,
    group: int | None = None,
    split: str = "train",
    n_hardest: int = 200,
    normalise: bool = False,
    contrast: str = "difference",
    fraction: float = 0.01,
    largest: bool = True,
    thinning: float = 0.0,
    seed: int = 0,
    layers: list[str] | None = None,
    include_downsample: bool = False,
    batch_size: int = 256,
    device: str | torch.device = "auto",
    context: ScoreContext | None = None,
) -> pd.DataFrame:
    """Score every candidate unit and return them ranked, best first.

    Columns: ``rank`` (1-based), ``unit`` (id), ``layer``, ``index``, ``score`` (after per-layer
    median normalisation when ``normalise``; layers whose median is not positive are left
    unscaled), ``raw_score``, and ``scorer``/``group``/``split``/``seed`` saying how it was made.
    Ties keep module order. Pass ``context`` to reuse cached predictions between calls.
    """
    spec = get_scorer(scorer)
    if context is None:
        context = ScoreContext(model, dataset, candidate_layers(model, include_downsample=include_downsample,
                                                                 layers=layers))
    ctx = context
    ctx.split, ctx.group, ctx.n_hardest, ctx.contrast = split, group, n_hardest, contrast
    ctx.fraction, ctx.largest, ctx.thinning, ctx.seed = fraction, largest, thinning, seed
    ctx.batch_size, ctx.device = batch_size, device
    if spec.per_group:
        _require_group(ctx)
    scores = spec.fn(ctx)
    rows = []
    for layer in ctx.layers:
        raw = scores[layer.name].double()
        scaled = raw
        if normalise:
            med = float(np.median(raw.numpy()))
            scaled = raw / med if med > 0 else raw
        for i in range(layer.n_units):
            rows.append((f"{layer.name}:{i}", layer.name, i, float(scaled[i]), float(raw[i])))
    table = pd.DataFrame(rows, columns=["unit", "layer", "index", "score", "raw_score"])
    table = table.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    table["scorer"], table["group"], table["split"], table["seed"] = scorer, group, split, seed
    table["normalised"] = normalise
    return table


def top_units(table: pd.DataFrame, k: int, per_layer: bool = False) -> list[Unit]:
    """The ``k`` best units of a ranked table, globally or (``per_layer``) ``k`` from each layer."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    chosen = table.groupby("layer", sort=False).head(k) if per_layer else table.head(k)
    return [Unit(layer, int(i)) for layer, i in zip(chosen["layer"], chosen["index"])]
