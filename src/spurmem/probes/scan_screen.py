"""First-order screen for unit scans: which (unit, example) pairs can change their prediction?

An exact scan pays, for every unit and every example, one pass of the network after the unit's
layer. Most of those passes change nothing: a trained network classifies most examples with logit
gaps far larger than what removing one of its thousands of units does to them. The screen
estimates, for every unit of every layer at once, how each logit difference of each example moves,
from one forward and ``C - 1`` backward passes per batch (``C`` classes) shared by all units:

* the unit's edit is carried *exactly* through the element-wise operations after its site
  (BatchNorm, the activation, a residual addition, pooling) up to the first operation that mixes
  channels; there its change meets the gradient of the logit differences, and their dot product is
  the first-order estimate. An edit that changes nothing there (say, a channel that stays at zero
  after its ReLU either way) is *known* to change nothing, not estimated to;
* a few *calibration* examples are run exactly for every unit; the largest error of the estimate
  there is the unit's *slack* (a unit whose removal the first-order estimate cannot describe, such
  as a first-layer channel whose removal collapses a class, gets a slack as large as its effect);
* a pair is *cleared* when every gap between the clean prediction's logit and another class's exceeds
  ``factor`` times (its estimated change + twice its unit's slack), plus a rounding tolerance.
  Cleared pairs keep their clean prediction (their margins and losses are the first-order
  estimates); every other pair is run exactly by the engine.

:func:`screened_scan` is the procedure behind ``ScanEngine.scan(..., screen=Screen())``: calibrate,
screen batch by batch, run the pairs the screen cannot clear exactly (their prefix values come
from the screen's own forward pass), audit.

The screen is a heuristic, not a bound: a change more than ``factor`` times its first-order estimate
can be missed. So an *audit* runs ``audit_units`` random units exactly on every example and counts
the flips the screen would have missed; :class:`ScreenReport` carries those counts, and the unit
memorisation report shows them.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from spurmem.data.batches import iterate_batches
from spurmem.probes.scan_edits import activation_values, edited_rows, unit_outputs
from spurmem.probes.scan_graph import FxSite
from spurmem.probes.screen_pass import ScreenPass, Unsupported, elementwise_chain
from spurmem.probes.units import Unit, get_module, output_site, unit_axis, units_by_layer
from spurmem.progress import Progress, human

@dataclass(frozen=True)
class Screen:
    """Settings of a screened scan (see the module docstring).

    ``factor``: a pair is cleared only when every logit gap exceeds ``factor`` times its estimated
    change plus its unit's slack (larger: more pairs run exactly, fewer misses). ``calibration``:
    examples run exactly for every unit, whose largest estimate error sets the unit's slack.
    ``audit_units``: random units run exactly
    on every example to count what the screen misses. ``batch_size``: examples per screen pass (its
    memory holds every activation of the batch with its autograd graph)."""

    factor: float = 2.0
    calibration: int = 16
    audit_units: int = 16
    seed: int = 0
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.factor < 1:
            raise ValueError(f"screen factor must be >= 1 (a cleared pair must keep its prediction), got {self.factor}")
        if self.audit_units < 0 or self.calibration < 0 or self.batch_size < 1:
            raise ValueError("screen audit_units and calibration must be >= 0 and batch_size >= 1")


@dataclass
class ScreenReport:
    """What the screen cleared, what ran exactly, and what the audit found.

    ``audit_missed`` counts audited pairs the screen cleared whose exact prediction differs from the
    clean one; ``audit_flips`` all audited pairs whose prediction changed. ``miss_rate_upper`` is the
    one-sided 95% upper bound (Clopper-Pearson) on the share of cleared pairs that flip."""

    factor: float
    pairs: int = 0
    exact_pairs: int = 0
    known_unchanged: int = 0
    exact_by_layer: dict[str, int] = field(default_factory=dict)
    calibration_examples: int = 0
    slack: dict[str, float] = field(default_factory=dict)
    unscreened_layers: list[str] = field(default_factory=list)
    audit_units: list[str] = field(default_factory=list)
    audit_pairs: int = 0
    audit_cleared: int = 0
    audit_flips: int = 0
    audit_missed: int = 0
    seconds_screen: float = 0.0
    seconds_calibration: float = 0.0
    seconds_exact: float = 0.0

    @property
    def exact_fraction(self) -> float:
        return self.exact_pairs / self.pairs if self.pairs else float("nan")

    @property
    def miss_rate_upper(self) -> float:
        return _clopper_pearson_upper(self.audit_missed, self.audit_cleared)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["exact_fraction"] = self.exact_fraction
        out["miss_rate_upper_95"] = self.miss_rate_upper
        out["flips_caught"] = self.audit_flips - self.audit_missed
        return out


def _clopper_pearson_upper(k: int, n: int, level: float = 0.95) -> float:
    if n == 0:
        return float("nan")
    if k >= n:
        return 1.0
    from scipy.stats import beta

    return float(beta.ppf(level, k + 1, n - k))


# -- the screened scan (the engine's ``scan(..., screen=...)``) ----------------------------------


@dataclass
class _LayerContext:
    """What a screened scan keeps per layer: its units, their result rows, the site, the edit
    (weight rows or activation values), the graph split and each unit's slack."""

    units: list[Unit]
    rows: np.ndarray
    site: str
    edit: Any
    slack: torch.Tensor
    runner: Any = None
    axis: int = 1



def screened_scan(engine, units: list, spec, params: dict, data, idx: torch.Tensor, acc,
                  row_of: dict[str, int], screen: Screen, stage: str | None = None) -> ScreenReport:
    """Calibrate the screen on a few examples run exactly for every unit, then screen every other
    (unit, example) pair batch by batch, count the cleared ones and run the rest exactly. The
    exact pairs take their prefix values from the screen's own forward pass. With ``stage`` (a
    name), both phases report their progress (:mod:`spurmem.progress`)."""
    report = ScreenReport(factor=screen.factor)
    weight_space = spec.space == "weight"
    layers = {layer: [Unit(layer, i) for i in ix] for layer, ix in units_by_layer(units).items()}
    ctx = {}
    with Progress(f"{stage}: edits", len(units), unit="units", enabled=stage is not None) as preparing:
        for layer, us in layers.items():
            ctx[layer] = _LayerContext(
                units=us, rows=np.array([row_of[u.id] for u in us]),
                site=layer if weight_space else output_site(engine.model, layer),
                edit=(edited_rows(engine.model, us, spec.name, params) if weight_space
                      else activation_values(us, spec.name, params)),
                slack=torch.zeros(len(us)))
            preparing.advance(len(us), info=layer)
    for layer, c in ctx.items():
        c.runner = engine.site(c.site, layer if weight_space else None)
        c.axis = unit_axis(get_module(engine.model, c.site))
    n = len(idx)
    pick = np.random.default_rng([screen.seed, 0]).choice(len(units), min(screen.audit_units, len(units)),
                                                           replace=False)
    audit_rows = {row_of[units[i].id] for i in pick}
    report.audit_units = [u.id for u in units if row_of[u.id] in audit_rows]
    calibration = np.sort(np.random.default_rng([screen.seed, 1]).choice(n, min(screen.calibration, n),
                                                                        replace=False))
    report.calibration_examples = len(calibration)
    screen_pass = ScreenPass(engine.graph, {layer: (c.site, weight_space) for layer, c in ctx.items()})

    n_batches = -(-len(calibration) // screen.batch_size)
    calibrating = Progress(f"{stage}: calibration", len(units) * n_batches, unit="units", enabled=stage is not None,
                           cost=f"{len(units):,} units x {len(calibration)} examples run exactly")
    started = time.process_time()
    for batch, positions in _screen_batches(engine, data, idx, calibration, screen.batch_size):
        sb = screen_pass.run(batch.x.to(engine.device))
        clean_diff = (sb.logits - sb.logits[:, :1]).cpu()
        for layer, c in ctx.items():
            est = _screen_layer(engine, sb, screen_pass, layer, c, weight_space)
            est = None if est is None else est[0].cpu()
            ks = np.repeat(np.arange(len(c.units)), len(positions))
            local = np.tile(np.arange(len(positions)), len(c.units))
            report.exact_by_layer[layer] = report.exact_by_layer.get(layer, 0) + len(ks)
            for k, loc, _, logits in _exact_batch(engine, c, weight_space, sb, batch, positions, ks, local, acc):
                if est is not None:
                    err = ((logits - logits[:, :1]) - clean_diff[loc] - est[loc, k]).abs().amax(1)
                    c.slack.scatter_reduce_(0, torch.as_tensor(k), err.float(), "amax")
            calibrating.advance(len(c.units), info=layer)
    calibrating.close()
    report.seconds_calibration = time.process_time() - started

    rest = np.setdiff1d(np.arange(n), calibration)
    bar = Progress(f"{stage}: screen", len(rest), unit="examples", enabled=stage is not None,
                   cost=f"{len(units):,} units x {len(rest):,} examples = {human(len(units) * len(rest))} pairs "
                        f"screened; the pairs it cannot clear and {len(audit_rows)} audit units run exactly")
    for batch, positions in _screen_batches(engine, data, idx, rest, screen.batch_size):
        t0 = time.process_time()
        sb = screen_pass.run(batch.x.to(engine.device))
        clean_pred = sb.logits.argmax(1).cpu().numpy()
        b = len(batch.y)
        todo_by_layer = {}
        for layer, c in ctx.items():
            audited = torch.as_tensor([r in audit_rows for r in c.rows.tolist()])
            ok = torch.zeros(b, len(c.units), dtype=torch.bool)
            est = _screen_layer(engine, sb, screen_pass, layer, c, weight_space)
            if est is not None:
                est, unchanged = est
                ok = sb.clear(est, screen.factor, 2 * c.slack.to(est.device)).cpu()
                counted = ok & ~audited[None, :]
                report.known_unchanged += int((unchanged.cpu() & counted).sum())
                acc.add_rows(c.rows.tolist(), (sb.logits.unsqueeze(1) + est).transpose(0, 1), batch, positions,
                             mask=counted.t())
            cleared_audit = ok & audited[None, :]
            todo = (~ok | audited[None, :]).nonzero().numpy()
            todo_by_layer[layer] = (todo, cleared_audit)
        t1 = time.process_time()
        report.seconds_screen += t1 - t0
        for layer, (todo, cleared_audit) in todo_by_layer.items():
            c = ctx[layer]
            report.exact_by_layer[layer] = report.exact_by_layer.get(layer, 0) + len(todo)
            report.audit_cleared += int(cleared_audit.sum())
            for k, loc, pred, _ in _exact_batch(engine, c, weight_space, sb, batch, positions, todo[:, 1],
                                                todo[:, 0], acc):
                mine = np.isin(c.rows[k], list(audit_rows))
                if mine.any():
                    flipped = pred[mine] != clean_pred[loc[mine]]
                    report.audit_flips += int(flipped.sum())
                    report.audit_missed += int((flipped & cleared_audit[loc[mine], k[mine]].numpy()).sum())
        report.seconds_exact += time.process_time() - t1
        done = sum(report.exact_by_layer.values())
        bar.advance(len(positions), info=f"{done:,} pairs run exactly so far")
    bar.close()
    report.unscreened_layers = [layer for layer, plan in screen_pass.plans.items() if plan is None]
    report.pairs = len(units) * n
    report.exact_pairs = sum(report.exact_by_layer.values())
    report.audit_pairs = len(audit_rows) * len(rest)
    report.slack = {layer: float(c.slack.max()) if len(c.slack) else 0.0 for layer, c in ctx.items()}
    return report


def _screen_batches(engine, data, idx: torch.Tensor, positions: np.ndarray, batch_size: int):
    """Batches of the examples at ``positions`` of ``idx``, with those positions."""
    for start in range(0, len(positions), batch_size):
        chunk = positions[start:start + batch_size]
        batch = next(iterate_batches(data, len(chunk), engine.dataset.mean, engine.dataset.std,
                                     indices=idx[torch.as_tensor(chunk)]))
        yield batch, chunk


def _screen_layer(engine, sb, screen_pass: ScreenPass, layer: str, c: "_LayerContext",
                  weight_space: bool) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The screen's estimate ``[B x K x C]`` and exactly-unchanged mask ``[B x K]`` for one
    layer's units on one batch; None when the screen cannot carry the edit through (the layer's
    pairs then all run exactly)."""
    plan = screen_pass.plans[layer]
    if plan is None:
        return None
    site = sb.env[plan.site]
    axis = c.axis % site.dim()
    per_unit = max(1, site.numel() // max(site.shape[axis], 1) * site.element_size())
    k_max = max(1, int(engine.memory_mb * 2**20 // (4 * per_unit)))
    ests, unchanged = [], []
    us = c.units
    try:
        for lo in range(0, len(us), k_max):
            channels = torch.as_tensor([u.index for u in us[lo:lo + k_max]], device=engine.device)
            if weight_space:
                rows_w, rows_b = c.edit
                slab = unit_outputs(get_module(engine.model, layer), sb.env[plan.layer_input],
                                     rows_w[lo:lo + k_max], None if rows_b is None else rows_b[lo:lo + k_max],
                                     channels.tolist())
            else:
                slab = site.index_select(axis, channels).clone()
                for j, value in enumerate(c.edit[lo:lo + k_max]):
                    target = slab.select(axis, j)
                    target.copy_(value) if isinstance(value, torch.Tensor) else target.fill_(value)
            ests.append(sb.estimate(plan, slab, channels, axis))
            unchanged.append(sb.unchanged)
    except Unsupported:
        screen_pass.plans[layer] = None
        return None
    return torch.cat(ests, dim=1), torch.cat(unchanged, dim=1)


def _exact_batch(engine, c: "_LayerContext", weight_space: bool, sb, batch, positions: np.ndarray,
                 ks: np.ndarray, local: np.ndarray, acc):
    """Run the pairs (unit ``c.units[ks[r]]``, example ``local[r]`` of the screened batch) exactly
    and count them; the prefix values come from the screen's forward pass. Yields the unit
    positions, local example positions, predictions and logits of each chunk."""
    if len(ks) == 0:
        return
    runner = c.runner
    pre = runner.prefix_from(sb.env) if isinstance(runner, FxSite) else runner.run_prefix(batch.x.to(engine.device))
    axis = c.axis % pre.site.dim()
    channels_all = torch.as_tensor([u.index for u in c.units])
    local_t = torch.as_tensor(local, device=engine.device)
    channels = channels_all[ks].to(engine.device)
    if weight_space:
        rows_w, rows_b = c.edit
        needed, inverse = np.unique(ks, return_inverse=True)
        slab = unit_outputs(get_module(engine.model, c.units[0].layer), pre.layer_input, rows_w[needed],
                             None if rows_b is None else rows_b[needed], channels_all[needed].tolist())
        values = slab.movedim(axis, 1)[local_t, torch.as_tensor(inverse, device=engine.device)]
    else:
        values = torch.empty_like(pre.site.movedim(axis, 1)[local_t, channels])
        for j, k in enumerate(ks.tolist()):
            value = c.edit[k]
            values[j].copy_(value) if isinstance(value, torch.Tensor) else values[j].fill_(value)
    per_row = max(1, pre.site[0].numel() * pre.site.element_size())
    # a quarter of the stacked-variant budget: the screen pass's values are alive beside it
    rows = engine.rows_for(c.site, c.units[0].layer if weight_space else None)
    r_max = max(1, min(rows, int(engine.memory_mb * 2**20 // (4 * per_row))))
    for a in range(0, len(ks), r_max):
        z = slice(a, a + r_max)
        logits = runner.run_pairs(pre, local_t[z], channels[z], values[z], axis)
        pred = acc.add_pairs(c.rows[ks[z]], logits, batch.y[local[z]], batch.g[local[z]],
                             positions[local[z]]).numpy()
        yield ks[z], local[z], pred, logits.float().cpu()


__all__ = ["Screen", "ScreenPass", "ScreenReport", "Unsupported", "elementwise_chain", "screened_scan"]
