"""Fast unit scans: the effect on every group of modifying each unit alone (docs/method.md §5.3).

A naive scan copies the model, edits one unit and re-runs the whole dataset, once per unit. The
engine exploits three kinds of structure, and gives the same predictions:

* **Prefix once.** The model is traced once with ``torch.fx``. For a layer, the graph splits at the
  unit's *site* (the layer's own output for weight-space interventions, its post-normalisation
  output for activation-space ones, see :func:`~spurmem.probes.units.output_site`) into a prefix
  (every node that does not depend on the site) and a suffix. Per batch the prefix runs once for all
  units of that layer; its values that the suffix needs (residual branches) are kept.
* **Variants stacked along the batch.** For a chunk of K units, the K modified site outputs are
  stacked into one ``K*B`` batch and the suffix runs once on it (prefix values are repeated).
* **One channel per unit.** A weight-space edit of unit c (``zero``, ``reinit``, ``noise``,
  ``rewind``) changes channel c of the layer's output only, so the K modified channels come from one
  small conv (or matmul) of the layer's input with the K edited weight rows; activation-space edits
  (``zero-activation``, ``mean-activation``) write their value into the channel directly.

* **Chunks sized by measurement.** How many variants to stack per suffix run depends on the layer
  and the machine; the engine times a few sizes on a layer's first chunks and keeps the fastest, and
  runs plain per-unit passes of the edited model where those are faster still
  (:mod:`~spurmem.probes.scan_tune`; ``ScanResult.layer_scans`` says what each layer used). A layer
  where stacking saves almost nothing (the stem, whose suffix is the whole network: the graph's
  multiply-adds say so) runs plain passes at once, without a prefix pass or trial chunks; a plain
  pass makes each unit's edit once for all batches, so it is the naive loop without its model copy
  (on the CPU, in calls of a measured number of examples: fewer than a batch can be faster).

Data are streamed in batches, so memory depends on the batch and chunk sizes, never on the dataset.
The edited rows come from :func:`~spurmem.probes.interventions.intervene` itself (one unit at a
time, with the scan's seed), so the semantics are those of the probes. Models that ``torch.fx``
cannot trace fall back to running the whole model on the stacked batch with a hook that substitutes
the site output (same results, no prefix saving).
"""

from __future__ import annotations

import hashlib
import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from spurmem.data.batches import iterate_batches, to_float
from spurmem.data.schema import GroupDataset
from spurmem.device import resolve_device
from spurmem.probes.interventions import get_intervention, intervene
from spurmem.probes.scan_edits import activation_values, edited_rows, unit_outputs
from spurmem.probes.scan_graph import FxSite, HookSite, functional_copy, inplace_again, multiply_adds, trace
from spurmem.probes.scan_result import Accumulator, ScanResult
from spurmem.probes.scan_screen import Screen, ScreenReport, screened_scan
from spurmem.probes.scan_tune import PLAIN_SHARE, ChunkTuner, LayerScan, RowTuner, Stopwatch
from spurmem.probes.units import Unit, enumerate_units, get_module, output_site, unit_axis, units_by_layer
from spurmem.progress import Progress, human


# -- the engine ----------------------------------------------------------------------------------

PREFIX_CACHE_MB = 512.0
DEFAULT_ROWS = 2048  # stacked rows where no measurement chose them (the screened scan's first pairs)

class ScanEngine:
    """Holds a private, traced copy of ``model`` and scans units of it; build once, scan many times
    (the localisation search calls :meth:`scan` at every step with a growing ``base_units``).

    ``max_rows`` fixes the stacked batch (variants x examples) of one suffix run; by default
    (None) each layer's is chosen by timing a few sizes on its first chunks (see
    :mod:`~spurmem.probes.scan_tune`), kept for later scans, and a layer whose plain per-unit
    passes of the edited model beat every stacked size runs those. ``memory_mb`` bounds the size of
    the stacked site outputs. Neither changes the results, only speed and memory.
    ``channel_chain=False`` switches off the one-channel correction through the next conv/linear
    (then every variant runs the whole suffix from the site).

    ``cache_mb`` bounds a cache of prefix outputs: the prefix of a layer's site is a function of the
    examples and of the edits (``base_units``) made to the modules it runs, nothing else, so repeated
    scans of the same examples (the search scans the same sets at every step) reuse it until an edit
    upstream of the site changes; a set evaluation (``sets=``) reuses the clean prefix before its
    earliest edited module. Oldest entries are dropped first. Off by default (``cache_mb=0``: a
    single scan of each layer gains nothing from it); the localisation search and the probe grid
    use :data:`PREFIX_CACHE_MB`.
    """

    def __init__(self, model: nn.Module, dataset: GroupDataset, *, batch_size: int = 256,
                 max_rows: int | None = None, memory_mb: float = 256.0, device: str | torch.device = "auto",
                 channel_chain: bool = True, cache_mb: float = 0.0) -> None:
        self.device = resolve_device(device)
        self.model = functional_copy(model).to(self.device)
        self.dataset = dataset
        self.batch_size = batch_size
        self.max_rows = max_rows
        self.memory_mb = memory_mb
        self.channel_chain = channel_chain
        self.graph = trace(self.model)
        self._sites: dict[tuple[str, str | None], FxSite | HookSite] = {}
        self.cache_mb = cache_mb
        self._prefix_cache: dict[tuple, tuple[list, int, dict]] = {}
        self._base: tuple[list[Unit], Any, dict[str, Any]] = ([], None, {})
        self._tuners: dict[tuple[str, str | None], ChunkTuner] = {}
        self._cost: dict[str, int] | None = None  # multiply-adds per module, for the plain-or-stacked choice
        self._shares: dict[tuple[str, str | None], float] = {}
        self._row_tuners: dict[tuple[str, str | None], RowTuner] = {}  # examples per plain call

    @property
    def kind(self) -> str:
        return "fx" if self.graph is not None else "hook"

    def site(self, site: str, layer: str | None) -> FxSite | HookSite:
        """The graph split at ``site`` (``layer``: the weight-space layer whose input it needs, or
        None), built once; the hook fallback where the graph has no such split."""
        key = (site, layer)
        if key not in self._sites:
            runner = None
            if self.graph is not None:
                try:
                    runner = FxSite(self.graph, site, layer, use_chain=self.channel_chain)
                except LookupError:
                    runner = None
            self._sites[key] = runner or HookSite(self.model, site, layer)
        return self._sites[key]

    @torch.no_grad()
    def scan(
        self,
        units: Sequence[Unit | str] | None = None,
        intervention: str = "zero",
        split: str = "train",
        *,
        sets: Sequence[Sequence[Unit | str]] | None = None,
        base_units: Sequence[Unit | str] = (),
        indices: torch.Tensor | np.ndarray | None = None,
        per_example: bool = False,
        baseline: bool = True,
        progress: bool = False,
        screen: Screen | None = None,
        **params: Any,
    ) -> ScanResult:
        """Evaluate ``split`` (or its ``indices``) once per unit of ``units`` modified alone (default:
        every candidate unit) and, when ``sets`` is given, once per set modified together; every
        variant on top of ``base_units`` (modified with the same intervention) when given.
        ``params`` go to :func:`~spurmem.probes.interventions.intervene` (``sigma``, ``seed``,
        ``source``, ``means``). ``baseline=False`` skips the pass of the unmodified model (its
        ``base_*`` fields are then zero). With ``screen``, single units are scanned through the
        first-order screen of :mod:`~spurmem.probes.scan_screen`: only the pairs it cannot clear run
        exactly (sets always run exactly); the result's ``screen`` says how many and what its audit
        found."""
        start = time.perf_counter()
        spec = get_intervention(intervention)
        units = [_as_unit(u) for u in (enumerate_units(self.model) if units is None and sets is None else units or [])]
        sets = [[_as_unit(u) for u in s] for s in (sets or [])]
        base = [_as_unit(u) for u in base_units]
        data = self.dataset[split]
        idx = torch.arange(len(data)) if indices is None else torch.as_tensor(np.asarray(indices), dtype=torch.long)
        n_groups = self.dataset.n_groups
        n_classes = self.dataset.n_classes
        acc = Accumulator(len(units) + len(sets), n_groups, len(idx) if per_example else 0, n_classes)
        base_acc = Accumulator(1, n_groups, len(idx) if per_example else 0, n_classes)
        labels = [u.id for u in units] + ["+".join(u.id for u in s) for s in sets]
        layers = [u.layer for u in units] + ["+".join(dict.fromkeys(u.layer for u in s)) for s in sets]
        stage = f"scan {split} ({intervention})"
        screened = screen is not None and bool(units) and self.graph is not None
        exact = len(sets) + (0 if screened else len(units))  # a screened scan reports its own phases
        bar = Progress(stage, exact, unit="variants", enabled=progress and exact > 0,
                       cost=f"{exact:,} variants x {len(idx):,} examples = {human(exact * len(idx))} passes")
        self._base = (base, spec, params)
        with ExitStack() as stack:
            stack.enter_context(bar)
            if base:
                stack.enter_context(intervene(self.model, base, intervention, inplace=True, **params))
            if baseline:
                with Progress(f"{stage}: baseline", len(idx), unit="examples", enabled=progress) as base_bar:
                    for batch, offset in self.batches(data, idx):
                        base_acc.add(0, self.model(batch.x.to(self.device)).unsqueeze(0), batch, offset)
                        base_bar.advance(len(batch.y))
            row_of = {label: i for i, label in enumerate(labels[:len(units)])}
            report, layer_scans = None, {}
            if screened:
                report = screened_scan(self, units, spec, params, data, idx, acc, row_of, screen,
                                       stage if progress else None)
            else:
                for layer, indices_ in units_by_layer(units).items():
                    order = [Unit(layer, i) for i in indices_]
                    layer_scans[layer] = self._scan_layer(order, spec, params, split, data, idx, acc,
                                                          [row_of[u.id] for u in order])
                    bar.advance(len(order), info=layer)
            for j, s in enumerate(sets):
                self._scan_set(s, spec, params, split, data, idx, acc, len(units) + j)
                bar.advance(1)
        count = np.bincount(data.group[idx].numpy(), minlength=n_groups)
        return ScanResult(
            split=split, intervention=intervention, params=_describe(params), labels=labels, layers=layers,
            group_names=self.dataset.group_names, count=count, correct=acc.correct, margin_sum=acc.margin,
            loss_sum=acc.loss, base_correct=base_acc.correct[0], base_margin_sum=base_acc.margin[0],
            base_loss_sum=base_acc.loss[0], base_units=[u.id for u in base],
            example_index=idx.numpy() if per_example else None,
            example_correct=acc.examples if per_example else None,
            base_example_correct=base_acc.examples[0] if per_example else None,
            pred_count=acc.pred, base_pred_count=base_acc.pred[0],
            seconds=time.perf_counter() - start, engine=self.kind if report is None else "fx-screened",
            screen=report, layer_scans=layer_scans,
        )

    def batches(self, data, idx: torch.Tensor, start: int = 0):
        """``(batch, offset)`` over the examples ``idx[start:]`` of the split ``data``, in order;
        ``offset`` is the batch's first position in ``idx``."""
        offset = start
        for batch in iterate_batches(data, self.batch_size, self.dataset.mean, self.dataset.std, indices=idx[start:]):
            yield batch, offset
            offset += len(batch.y)

    def _scan_layer(self, units: list[Unit], spec, params, split: str, data, idx, acc: "Accumulator",
                    rows: list[int]) -> LayerScan:
        layer = units[0].layer
        weight_space = spec.space == "weight"
        site = layer if weight_space else output_site(self.model, layer)
        key = (site, layer if weight_space else None)
        runner = self.site(*key)
        clock = Stopwatch()
        # the tuner's clock: CPU time on the CPU (other jobs on a shared machine barely move it), wall
        # time on an accelerator (logits reach the host in every chunk, so the chunk has finished)
        tick = time.process_time if self.device.type == "cpu" else time.perf_counter
        n = len(units)
        tuner = None if self.max_rows is not None else self._tuners.get(key)
        saved = None if self.max_rows is not None else self._saved_share(runner, key, data, idx)
        if saved is not None and saved < PLAIN_SHARE:  # stacking cannot win: plain at once
            self._plain_passes(key, units, rows, spec, params, data, idx, acc, 0, tick)
            why = (f"plain passes: stacking saves {saved:.1%} of a forward pass per unit (< {PLAIN_SHARE:.0%}); "
                   "no prefix pass, nothing timed")
            info = self._plain_info(LayerScan(rows=None, how="graph", why=why, saved_share=saved), key)
            return _timed(info, n, [0.0, 0.0], clock.lap())
        if tuner is not None and tuner.done and tuner.use_plain:
            self._plain_passes(key, units, rows, spec, params, data, idx, acc, 0, tick)
            info = self._plain_info(tuner.describe("cached"), key)
            info.saved_share = saved
            return _timed(info, n, [0.0, 0.0], clock.lap())

        axis = unit_axis(get_module(self.model, site))
        if weight_space:
            rows_w, rows_b = edited_rows(self.model, units, spec.name, params)
        else:
            values = activation_values(units, spec.name, params)
        channels = [u.index for u in units]
        how = "fixed" if self.max_rows is not None else "cached" if tuner is not None and tuner.done else "tuned"
        prefix, variants = [0.0, 0.0], [0.0, 0.0]

        def stacked(chunk: list[int], batch, offset: int, pre) -> None:
            cs = [channels[p] for p in chunk]
            if weight_space:
                slab = unit_outputs(get_module(self.model, layer), pre.layer_input, rows_w[chunk],
                                    None if rows_b is None else rows_b[chunk], cs)
            else:
                slab = pre.site.index_select(axis, torch.as_tensor(cs, device=self.device)).clone()
                for j, p in enumerate(chunk):
                    target, value = slab.select(axis, j), values[p]
                    target.copy_(value) if isinstance(value, torch.Tensor) else target.fill_(value)
            logits = runner.run_variants(pre, cs, slab, axis)
            acc.add_rows([rows[p] for p in chunk], logits.reshape(len(chunk), pre.site.shape[0], -1), batch, offset)

        todo = list(range(n))  # the units still run stacked (a unit timed as a plain pass leaves it)
        plain_rest = None  # (units done on this batch, the next batch's first example, units not done, this batch's)
        for batch, offset, pre in self._prefixes(runner, key[0], key[1], split, data, idx):
            lap = clock.lap()
            _add(prefix, lap)
            b = pre.site.shape[0]
            per_variant = pre.site.numel() * pre.site.element_size()
            k_cap = max(1, int(self.memory_mb * 2**20 // max(per_variant, 1)))
            if tuner is None and self.max_rows is None:
                tuner = self._tuners[key] = ChunkTuner(b, k_cap, plain=True)
            if tuner is not None and hasattr(batch, "x") and b == tuner.b:  # cached prefixes keep labels only
                tuner.note_prefix(lap[1] if tick is time.process_time else lap[0])
            i = 0
            while i < len(todo):
                if tuner is not None and tuner.want_plain:  # time one unit's plain passes (all its batches)
                    p = todo.pop(i)
                    seconds, examples = self._plain_passes(key, [units[p]], [rows[p]], spec, params, data, idx, acc,
                                                           offset, tick)
                    tuner.record_plain(seconds * tuner.b / examples)
                    if tuner.use_plain:
                        plain_rest = (todo[:i], offset + b, todo[i:], offset)
                        break
                    continue
                if tuner is None:
                    k, timed = max(1, min(self.max_rows // b, k_cap)), False
                else:
                    k, timed = tuner.chunk(len(todo) - i, b, len(todo))
                    k = min(k, k_cap)
                chunk = todo[i:i + k]
                t = tick()
                stacked(chunk, batch, offset, pre)
                if timed:
                    tuner.record(len(chunk), tick() - t)
                i += len(chunk)
            _add(variants, clock.lap())
            if plain_rest is not None:
                break
        if plain_rest is not None:  # plain passes won: the rest of the layer runs them
            done, after, rest, current = plain_rest
            self._plain_passes(key, [units[p] for p in done], [rows[p] for p in done], spec, params, data, idx, acc,
                               after, tick)
            self._plain_passes(key, [units[p] for p in rest], [rows[p] for p in rest], spec, params, data, idx, acc,
                               current, tick)
            _add(variants, clock.lap())
        if tuner is None:
            info = LayerScan(rows=self.max_rows, how=how, why=f"max_rows={self.max_rows} set")
        else:
            info = self._plain_info(tuner.describe(how if tuner.done else "tuning"), key)
            info.saved_share = saved
        return _timed(info, n, prefix, variants)

    def _plain_passes(self, key: tuple, units: list[Unit], rows: list[int], spec, params, data, idx,
                      acc: "Accumulator", start: int, tick) -> tuple[float, int]:
        """Each unit's edit made once (in place, undone on exit), then the examples of ``idx`` from
        position ``start`` on run through the edited model, batch by batch (its activations in place
        again, as in the caller's model): what the naive loop does, without its copy of the model.
        On the CPU each batch runs in calls of the measured size (:class:`RowTuner`, kept per site).
        Returns the ``tick`` seconds and the size of the first batch."""
        tuner = self._row_tuners.get(key)
        if tuner is None and self.device.type == "cpu":
            tuner = self._row_tuners[key] = RowTuner(min(self.batch_size, max(len(idx), 1)))
        first = None
        for unit, row in zip(units, rows):
            with intervene(self.model, [unit], spec.name, inplace=True, **params), inplace_again(self.model):
                for batch, offset in self.batches(data, idx, start):
                    x = batch.x.to(self.device)
                    t0, parts, lo = tick(), [], 0
                    while lo < len(x):
                        r = len(x) if tuner is None else tuner.rows
                        t = tick()
                        parts.append(self.model(x[lo:lo + r]))
                        if tuner is not None:
                            tuner.record(len(parts[-1]), tick() - t)
                        lo += r
                    acc.add_rows([row], torch.cat(parts).unsqueeze(0), batch, offset)
                    if first is None:
                        first = (tick() - t0, len(batch.y))
        return first or (0.0, 1)

    def _plain_info(self, info: LayerScan, key: tuple) -> LayerScan:
        tuner = self._row_tuners.get(key)
        if info.plain and tuner is not None and tuner.per_example:
            info.plain_rows = tuner.rows
            info.why += f"; {tuner.describe()}"
        return info

    def _saved_share(self, runner, key: tuple, data, idx) -> float | None:
        """:meth:`FxSite.saved_share` of this site, from the model's multiply-adds (counted once, on
        one example); None for the hook fallback."""
        if not isinstance(runner, FxSite) or len(idx) == 0:
            return None
        if key not in self._shares:
            if self._cost is None:
                x = to_float(data.images[idx[:1]], self.dataset.mean, self.dataset.std).to(self.device)
                self._cost = multiply_adds(self.model, x)
            self._shares[key] = runner.saved_share(self._cost)
        return self._shares[key]

    def rows_for(self, site: str, layer: str | None) -> int:
        """Stacked rows per run at this site: ``max_rows`` when set, else the tuned size (or
        :data:`DEFAULT_ROWS` before any scan measured it)."""
        if self.max_rows is not None:
            return self.max_rows
        tuner = self._tuners.get((site, layer))
        return tuner.rows if tuner is not None and tuner.done else DEFAULT_ROWS

    def _scan_set(self, units: list[Unit], spec, params, split: str, data, idx, acc: "Accumulator", row: int) -> None:
        """One set modified together: the graph is split at the input of the earliest edited module,
        the clean prefix (shared by every set entering there, and cached) runs once, and the suffix
        runs with the set's edits in place; the whole model when no such split exists."""
        runner, site = self._set_entry(units, spec)
        with intervene(self.model, units, spec.name, inplace=True, **params):
            if runner is None:
                for batch, offset in self.batches(data, idx):
                    acc.add(row, self.model(batch.x.to(self.device)).unsqueeze(0), batch, offset)
                return
            for labels, offset, pre in self._prefixes(runner, site, "before", split, data, idx, base=False):
                acc.add(row, runner.run_suffix_clean(pre).unsqueeze(0), labels, offset)

    def _set_entry(self, units: list[Unit], spec) -> tuple[FxSite | None, str | None]:
        """The split before an edited module of the set whose prefix runs no edited module (of the
        set or of the scan's ``base_units``), the one with the longest prefix."""
        if self.graph is None or self.cache_mb <= 0:
            return None, None
        edited = {_edited_module(self.model, u, spec) for u in units}
        touched = edited | {_edited_module(self.model, u, self._base[1]) for u in self._base[0]}
        best, best_site = None, None
        for site in sorted(edited):
            key = (site, "before")
            if key not in self._sites:
                try:
                    self._sites[key] = FxSite(self.graph, site, None, use_chain=False, before=True)
                except (LookupError, ValueError):
                    self._sites[key] = None
            runner = self._sites[key]
            if runner is None or runner.prefix_modules & touched:
                continue
            if best is None or len(runner.prefix_modules) > len(best.prefix_modules):
                best, best_site = runner, site
        return best, best_site

    def _prefixes(self, runner, site: str, layer: str | None, split: str, data, idx: torch.Tensor, base: bool = True):
        """``(labels, offset, prefix)`` per batch of ``idx``, from the cache when the same examples
        were run through the same prefix under the same upstream edits (``base=False``: a prefix that
        no edit reaches)."""
        key = self._prefix_key(runner, site, layer, split, idx, base)
        if key is not None and key in self._prefix_cache:
            yield from self._prefix_cache[key][0]
            return
        entries, size = [], 0
        for batch, offset in self.batches(data, idx):
            pre = runner.run_prefix(batch.x.to(self.device))
            if key is not None:
                entries.append((_Labels(batch.y, batch.g), offset, pre))
                size += _nbytes(pre)
                if size > self.cache_mb * 2**20:  # too large to keep: stream (memory stays flat)
                    key, entries = None, []
            yield batch, offset, pre
        if key is not None:
            self._remember(key, entries, size, self._base[2])

    def _prefix_key(self, runner, site: str, layer: str | None, split: str, idx: torch.Tensor,
                    base_edits: bool = True) -> tuple | None:
        if self.cache_mb <= 0 or not isinstance(runner, FxSite):
            return None
        base, spec, params = self._base if base_edits else ([], None, {})
        edited = [u for u in base if _edited_module(self.model, u, spec) in runner.prefix_modules]
        if spec is not None and spec.random:
            edited = base  # the draws of a layer depend on the edits before it in module order
        edit = (spec.name if edited else None, tuple(sorted(u.id for u in edited)),
                tuple(sorted((k, v if isinstance(v, (int, float, str, type(None))) else id(v))
                             for k, v in params.items())) if edited else ())
        examples = hashlib.sha1(idx.numpy().tobytes()).hexdigest()
        return (split, examples, site, layer, self.batch_size, edit)

    def _remember(self, key: tuple, entries: list, size: int, params: dict) -> None:
        """Keep ``entries`` (and ``params``: the key holds the ids of its non-scalar values, which
        must stay alive to stay unique) within ``cache_mb``, dropping the oldest first."""
        budget = self.cache_mb * 2**20
        if size > budget:
            return
        while self._prefix_cache and size + sum(e[1] for e in self._prefix_cache.values()) > budget:
            self._prefix_cache.pop(next(iter(self._prefix_cache)))
        self._prefix_cache[key] = (entries, size, params)

    def clear_cache(self) -> None:
        """Drop the cached prefix outputs (they are only valid while the engine's weights are unchanged)."""
        self._prefix_cache.clear()


@dataclass
class _Labels:
    """The part of a batch the accumulator needs (the images stay out of the cache)."""

    y: torch.Tensor
    g: torch.Tensor


def _timed(info: LayerScan, units: int, prefix, variants) -> LayerScan:
    info.units = units
    info.prefix_seconds, info.prefix_cpu = prefix
    info.variant_seconds, info.variant_cpu = variants
    return info


def _add(total: list[float], lap: tuple[float, float]) -> None:
    total[0] += lap[0]
    total[1] += lap[1]


def _nbytes(pre) -> int:
    tensors = {id(t): t for t in [pre.site, pre.layer_input, pre.chain_input, *pre.kept] if isinstance(t, torch.Tensor)}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def _edited_module(model: nn.Module, unit: Unit, spec) -> str:
    return unit.layer if spec.space == "weight" else output_site(model, unit.layer)


def _as_unit(u: Unit | str) -> Unit:
    return u if isinstance(u, Unit) else Unit.parse(u)


def _describe(params: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in params.items():
        out[key] = value if isinstance(value, (int, float, str, type(None))) else f"<{type(value).__name__}>"
    return out


def scan_units(model: nn.Module, dataset: GroupDataset, units: Sequence[Unit | str] | None = None,
               intervention: str = "zero", split: str = "train", *, batch_size: int = 256,
               device: str | torch.device = "auto", **kwargs: Any) -> ScanResult:
    """One-shot :meth:`ScanEngine.scan` (the caller's model is never modified)."""
    engine = ScanEngine(model, dataset, batch_size=batch_size, device=device)
    return engine.scan(units, intervention, split, **kwargs)


__all__ = ["DEFAULT_ROWS", "PREFIX_CACHE_MB", "LayerScan", "ScanEngine", "ScanResult", "Screen", "ScreenReport", "scan_units"]
