"""How many variants the scan engine stacks per suffix run, chosen by measurement on the machine.

Stacking K variants of a batch of B examples into one ``K*B`` suffix run saves per-call overhead,
but past some size the stacked activations leave the caches and every row gets slower; where that
happens depends on the layer (its maps' size) and the machine. :class:`ChunkTuner` finds it on real
work: the first chunks of a layer's scan are run at doubling sizes (128 to 4,096 rows, within the
engine's ``memory_mb`` and the layer's unit count), each timed, until one is slower per variant
than the previous; the fastest is kept. Where a plain pass (the whole edited model on the batch,
what the naive loop does per unit) could be faster (it costs at least a prefix pass, so only where
the best stacked size costs more per unit than that), one is timed too, and the layer falls back
to plain passes where they beat every stacked size. Every timed chunk is part of the scan (its
counts are kept), so tuning costs only the slower sizes it tries, once per engine and layer.

Before any of that, the graph decides the layers where stacking cannot win: a stacked variant
saves only the work it shares with the other variants (the prefix, and the next layer where the
one-channel correction replaces it, see :meth:`~spurmem.probes.scan_graph.FxSite.saved_share`).
Where that is below :data:`PLAIN_SHARE` of a forward pass (a stem layer, whose suffix is the whole
network), the layer runs plain passes at once: no prefix pass, no trial chunks, each unit's edit
applied once for all batches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

TUNE_ROWS = (128, 256, 512, 1024, 2048, 4096)
PLAIN_MARGIN = 1.0  # plain passes wherever they measured faster (where the two are close, either will do)
PLAIN_ROWS = (16, 32, 64, 128, 256)  # examples per call of a plain pass, tried in this order
PLAIN_SHARE = 0.02  # plain passes without measuring where stacking saves less than this share of a forward pass


@dataclass
class LayerScan:
    """How one layer's variants ran in a scan, and what they cost.

    ``rows``: stacked rows (variants x examples) per suffix run, None where the layer ran plain
    per-unit passes (``plain``). ``how``: ``"fixed"`` (the engine's ``max_rows``), ``"graph"``
    (plain passes because the graph says stacking saves too little, nothing timed), ``"tuned"``
    (measured during this scan), ``"cached"`` (measured by an earlier scan of the engine) or
    ``"tuning"`` (the scan had too few units to finish the search: the best size so far); ``why``
    says it in words. ``saved_share``: the share of a forward pass's multiply-adds a stacked
    variant does not repeat (None for a model ``torch.fx`` cannot trace, or a fixed ``max_rows``).
    ``per_unit_seconds``: the measured seconds (CPU time on the CPU, wall time on an accelerator)
    per variant and batch of each candidate (``"plain"`` or the rows). ``plain_rows``: examples per
    call of the plain passes (measured, see :class:`RowTuner`), where they ran. ``prefix_*``/``variant_*``:
    wall and CPU seconds of this scan's prefix passes and of its variants (edits, suffix runs and
    counting), over ``units`` units."""

    rows: int | None
    how: str
    why: str = ""
    saved_share: float | None = None
    per_unit_seconds: dict[str, float] = field(default_factory=dict)
    plain_rows: int | None = None
    units: int = 0
    prefix_seconds: float = 0.0
    prefix_cpu: float = 0.0
    variant_seconds: float = 0.0
    variant_cpu: float = 0.0

    @property
    def plain(self) -> bool:
        return self.rows is None


class ChunkTuner:
    """Doubling search for one layer's stacked size, fed with the timings of real chunks.

    ``b``: the batch size it measures at; ``k_cap``: the most variants ``memory_mb`` allows;
    ``plain``: the engine can run plain passes (it then asks for one, through ``want_plain``, when
    the search ends above the prefix's cost, see :meth:`note_prefix`)."""

    def __init__(self, b: int, k_cap: int, plain: bool) -> None:
        self.b = b
        self.candidates = sorted({max(1, min(r // b, k_cap)) for r in TUNE_ROWS})
        self.step = 0
        self.per_unit: dict[int, float] = {}
        self.plain_per_unit: float | None = None
        self.plain_possible = plain
        self.want_plain = False
        self.prefix: float | None = None
        self.best: int | None = None
        self.use_plain = False

    @property
    def done(self) -> bool:
        return self.best is not None

    @property
    def candidate(self) -> int:
        return self.candidates[self.step]

    def chunk(self, remaining: int, b: int, total: int) -> tuple[int, bool]:
        """Variants to stack next with ``remaining`` left in this batch of ``b`` (``total`` in the
        layer's scan), and whether that chunk is a measurement (record its time with :meth:`record`).
        Sizes above ``total`` cannot be measured: the search ends at ``total``."""
        if not self.done:
            k = min(self.candidate, total)
            if self.step and k <= self.candidates[self.step - 1]:
                self._decide(min(self.per_unit, key=self.per_unit.get))
            elif b == self.b and k <= remaining:
                return k, True
        if self.done:
            return max(1, self.rows // b), False
        measured = min(self.per_unit, key=self.per_unit.get) if self.per_unit else self.candidates[0]
        return max(1, measured * self.b // b), False

    def record(self, k: int, seconds: float) -> None:
        self.per_unit[k] = seconds / k
        if self.step and self.per_unit[k] > self.per_unit[self.candidates[self.step - 1]]:
            self._decide(self.candidates[self.step - 1])
        elif k < self.candidate or self.step + 1 == len(self.candidates):
            self._decide(k)
        else:
            self.step += 1

    def note_prefix(self, seconds: float) -> None:
        """The time of one prefix pass over a batch: a lower bound on a plain pass's."""
        self.prefix = seconds if self.prefix is None else min(self.prefix, seconds)

    def record_plain(self, seconds: float) -> None:
        self.plain_per_unit = seconds
        self.want_plain = False
        if self.done:
            self._decide(self.best)

    def _decide(self, k: int) -> None:
        self.best = k
        best = min(self.per_unit.values())
        if self.plain_per_unit is None:
            self.want_plain = self.plain_possible and self.prefix is not None and best > self.prefix
        self.use_plain = self.plain_per_unit is not None and self.plain_per_unit < PLAIN_MARGIN * best

    @property
    def rows(self) -> int:
        return (self.best or self.candidates[0]) * self.b

    def describe(self, how: str) -> LayerScan:
        """The record of a scan that used this tuner (``how``: tuned, cached or tuning)."""
        seconds = {str(k * self.b): round(v, 6) for k, v in sorted(self.per_unit.items())}
        if self.plain_per_unit is not None:
            seconds["plain"] = round(self.plain_per_unit, 6)
        plain = self.done and self.use_plain
        return LayerScan(rows=None if plain else self.rows, how=how, why=self._why(how, plain), per_unit_seconds=seconds)

    def _why(self, how: str, plain: bool) -> str:
        if not self.per_unit:
            return "nothing measured yet"
        best = self.best or min(self.per_unit, key=self.per_unit.get)
        stacked = f"{best * self.b} stacked rows at {self.per_unit[best]:.3g} s per unit and batch"
        tried = ", ".join(str(k * self.b) for k in sorted(self.per_unit))
        if plain:
            out = f"plain passes at {self.plain_per_unit:.3g} s per unit and batch, faster than {stacked}"
        elif self.plain_per_unit is not None:
            out = f"{stacked}, faster than plain passes at {self.plain_per_unit:.3g}"
        elif self.prefix is not None and self.done and self.per_unit[best] <= self.prefix:
            out = f"{stacked}, the fastest of {tried} rows; below a prefix pass ({self.prefix:.3g} s), so no plain pass timed"
        else:
            out = f"{stacked}, the fastest of {tried} rows"
        if how == "tuning":
            out += " (too few units to finish the search: the best so far)"
        elif how == "cached":
            out += " (measured by an earlier scan)"
        return out


class RowTuner:
    """Doubling search for the examples per call of a layer's plain passes (``PLAIN_ROWS``, capped
    at the batch ``b``): a whole-network pass of fewer examples keeps its activations closer to the
    caches and can cost less per example than the full batch. Each size times one real call (its
    logits are kept) until one is slower per example than the previous; the fastest is kept."""

    def __init__(self, b: int) -> None:
        self.b = b
        self.candidates = sorted({min(r, b) for r in PLAIN_ROWS})
        self.step = 0
        self.per_example: dict[int, float] = {}
        self.best: int | None = None

    @property
    def done(self) -> bool:
        return self.best is not None

    @property
    def rows(self) -> int:
        """Examples for the next call: the size being measured, or the one chosen."""
        return self.best if self.best is not None else self.candidates[self.step]

    def record(self, rows: int, seconds: float) -> None:
        if self.done or rows != self.candidates[self.step]:
            return  # a short call (the end of a batch) measures nothing
        self.per_example[rows] = seconds / rows
        if self.step and self.per_example[rows] > self.per_example[self.candidates[self.step - 1]]:
            self.best = self.candidates[self.step - 1]
        elif self.step + 1 == len(self.candidates):
            self.best = rows
        else:
            self.step += 1

    def describe(self) -> str:
        tried = ", ".join(str(r) for r in sorted(self.per_example))
        state = "" if self.done else " so far"
        return f"{self.rows} examples per plain call (the fastest{state} of {tried})"


class Stopwatch:
    """Wall and CPU (this process, all threads) seconds since the last :meth:`lap`."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def lap(self) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        out = (wall - self.wall, cpu - self.cpu)
        self.wall, self.cpu = wall, cpu
        return out


__all__ = ["ChunkTuner", "LayerScan", "PLAIN_MARGIN", "PLAIN_ROWS", "PLAIN_SHARE", "RowTuner", "Stopwatch", "TUNE_ROWS"]
