"""Probes (docs/method.md §3-5): units, scorers, interventions, the probe runner and its verdicts.

Public API: :func:`probe` / :func:`probe_run` (the grid), :func:`score_units` + :func:`top_units`,
:func:`intervene` (reversible edits), :func:`classify` (verdicts), the ``SCORERS`` and
``INTERVENTIONS`` registries, :class:`ProbeConfig` and the unit helpers. The greedy localisation search
is ``spurmem.probes.localize.localize`` (the name of its module). Names are imported on first use.
"""

from __future__ import annotations

from spurmem.lazy import lazy_exports

_EXPORTS = {
    'probe': 'spurmem.probes.api',
    'probe_run': 'spurmem.probes.api',
    'ProbeConfig': 'spurmem.probes.config',
    'INTERVENTIONS': 'spurmem.probes.interventions',
    'activation_means': 'spurmem.probes.interventions',
    'intervene': 'spurmem.probes.interventions',
    'LocalizeResult': 'spurmem.probes.localize',
    'ProbeResult': 'spurmem.probes.runner',
    'run_probe': 'spurmem.probes.runner',
    'ScanEngine': 'spurmem.probes.scan',
    'ScanResult': 'spurmem.probes.scan',
    'Screen': 'spurmem.probes.scan',
    'ScreenReport': 'spurmem.probes.scan',
    'scan_units': 'spurmem.probes.scan',
    'SCORERS': 'spurmem.probes.scorers',
    'score_units': 'spurmem.probes.scorers',
    'select_weights': 'spurmem.probes.scorers',
    'top_units': 'spurmem.probes.scorers',
    'Unit': 'spurmem.probes.units',
    'WeightSelection': 'spurmem.probes.units',
    'candidate_layers': 'spurmem.probes.units',
    'enumerate_units': 'spurmem.probes.units',
    'output_site': 'spurmem.probes.units',
    'Thresholds': 'spurmem.probes.verdicts',
    'Verdict': 'spurmem.probes.verdicts',
    'classify': 'spurmem.probes.verdicts',
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
