"""Memorisation (docs/method.md §5.3): per unit (:func:`unit_memorization`), per example (:func:`example_memorization`,
Feldman-style with models on random halves) and per group (:func:`gap_report`)."""

from __future__ import annotations

from spurmem.memorization.examples import ExampleMemorization, example_memorization, flip_order
from spurmem.memorization.gap import GapReport, gap_report
from spurmem.memorization.units import UnitMemorization, concentration, top_share, unit_memorization

__all__ = [
    "ExampleMemorization", "GapReport", "UnitMemorization", "concentration", "example_memorization",
    "flip_order", "gap_report", "top_share", "unit_memorization",
]
