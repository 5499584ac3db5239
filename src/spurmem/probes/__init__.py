"""Probes (docs/method.md §3-5): units, scorers, interventions, the probe runner and its verdicts.

Public API: :func:`probe` / :func:`probe_run` (the grid), :func:`score_units` + :func:`top_units`,
:func:`intervene` (reversible edits), :func:`classify` (verdicts), the ``SCORERS`` and
``INTERVENTIONS`` registries, :class:`ProbeConfig` and the unit helpers.
"""

from __future__ import annotations

from spurmem.probes.api import probe, probe_run
from spurmem.probes.config import ProbeConfig
from spurmem.probes.interventions import INTERVENTIONS, activation_means, intervene
from spurmem.probes.localize import LocalizeResult, localize
from spurmem.probes.runner import ProbeResult, run_probe
from spurmem.probes.scan import ScanEngine, ScanResult, Screen, ScreenReport, scan_units
from spurmem.probes.scorers import SCORERS, score_units, select_weights, top_units
from spurmem.probes.units import Unit, WeightSelection, candidate_layers, enumerate_units, output_site
from spurmem.probes.verdicts import Thresholds, Verdict, classify

__all__ = [
    "INTERVENTIONS", "ProbeConfig", "ProbeResult", "SCORERS", "Thresholds", "Unit", "Verdict", "WeightSelection",
    "LocalizeResult", "ScanEngine", "ScanResult", "Screen", "ScreenReport", "localize", "scan_units",
    "activation_means", "candidate_layers", "classify", "enumerate_units", "intervene", "output_site", "probe",
    "probe_run", "run_probe", "score_units", "select_weights", "top_units",
]
