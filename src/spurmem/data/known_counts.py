"""The published group counts of the real benchmarks, and the check the folder loaders make against them.

Counts are per split, in group order g = 2y + a (docs/method.md §2):

* Waterbirds (``waterbird_complete95_forest2water2``, Sagawa et al. 2020): g0 landbird/land,
  g1 landbird/water, g2 waterbird/land, g3 waterbird/water. Training 3498 / 184 / 56 / 1057 is
  SPEC §8; validation and test as in the GroupDRO code release and the papers built on it.
* CelebA with target Blond_Hair and spurious attribute Male (the official partition
  ``list_eval_partition.txt``): g0 not blond/female, g1 not blond/male, g2 blond/female,
  g3 blond/male, as tabulated by the GroupDRO and JTT papers (train 162,770, val 19,867,
  test 19,962 images).

``check_known_counts`` compares a loaded folder with them. ``expect_counts="auto"`` (the loaders'
default) checks only a folder that looks like the full benchmark (at least half its images), so a
deliberately reduced copy is left alone; ``true`` always checks, ``false`` never. A difference is a
warning naming the metadata file and every differing group, or a :class:`DataError` with
``strict_counts=true``.
"""

from __future__ import annotations

import warnings
from typing import Literal, Sequence

from spurmem.data.schema import SPLITS, DataError

ExpectCounts = Literal["auto", True, False]

KNOWN_COUNTS: dict[str, dict[str, list[int]]] = {
    "waterbirds": {
        "train": [3498, 184, 56, 1057],
        "val": [467, 466, 133, 133],
        "test": [2255, 2255, 642, 642],
    },
    "celeba:Blond_Hair:Male": {
        "train": [71629, 66874, 22880, 1387],
        "val": [8535, 8276, 2874, 182],
        "test": [9767, 7535, 2480, 180],
    },
}
BENCHMARK_NAMES = {"waterbirds": "Waterbirds", "celeba:Blond_Hair:Male": "CelebA (Blond_Hair x Male)"}
LOOKS_FULL = 0.5  # "auto" checks a folder holding at least this share of the benchmark's images


def celeba_key(target: str, spurious: str) -> str:
    return f"celeba:{target}:{spurious}"


def count_differences(expected: dict[str, list[int]], found: dict[str, list[int]],
                      group_names: Sequence[str]) -> list[str]:
    """One ``split g1 (name): 184 expected, 180 found`` phrase per differing group."""
    out = []
    for split in SPLITS:
        for g, (want, got) in enumerate(zip(expected[split], found[split])):
            if want != got:
                out.append(f"{split} g{g} ({group_names[g]}): {want} expected, {got} found")
    return out


def check_known_counts(
    benchmark: str,
    found: dict[str, list[int]],
    group_names: Sequence[str],
    described_in: str,
    expect_counts: ExpectCounts = "auto",
    strict_counts: bool = False,
) -> list[str]:
    """Compare ``found`` (per-split group counts) with the published counts of ``benchmark``.

    Returns the differences (empty when they match, or when nothing was checked: an unknown
    benchmark, ``expect_counts=false``, or ``"auto"`` on a folder much smaller than the benchmark).
    """
    if expect_counts not in ("auto", True, False):
        raise DataError(f"expect_counts must be auto, true or false, got {expect_counts!r}")
    if not isinstance(strict_counts, bool):
        raise DataError(f"strict_counts must be true or false, got {strict_counts!r}")
    expected = KNOWN_COUNTS.get(benchmark)
    if expected is None or expect_counts is False:
        return []
    total = sum(sum(v) for v in expected.values())
    if expect_counts == "auto" and sum(sum(v) for v in found.values()) < LOOKS_FULL * total:
        return []
    differences = count_differences(expected, found, group_names)
    if differences:
        message = (f"{described_in}: the group counts differ from the published {BENCHMARK_NAMES[benchmark]} "
                   f"counts: {'; '.join(differences)} (a partial or altered copy? expect_counts=false "
                   "skips this check)")
        if strict_counts:
            raise DataError(message)
        warnings.warn(message, stacklevel=4)
    return differences
