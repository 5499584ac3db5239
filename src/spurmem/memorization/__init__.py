"""Memorisation (docs/method.md §5.3): per unit (:func:`unit_memorization`), per example (:func:`example_memorization`,
Feldman-style with models on random halves) and per group (:func:`gap_report`)."""

from __future__ import annotations

from spurmem.lazy import lazy_exports

_EXPORTS = {
    'ExampleMemorization': 'spurmem.memorization.examples',
    'example_memorization': 'spurmem.memorization.examples',
    'flip_order': 'spurmem.memorization.examples',
    'GapReport': 'spurmem.memorization.gap',
    'gap_report': 'spurmem.memorization.gap',
    'UnitMemorization': 'spurmem.memorization.units',
    'concentration': 'spurmem.memorization.units',
    'top_share': 'spurmem.memorization.units',
    'unit_memorization': 'spurmem.memorization.units',
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
