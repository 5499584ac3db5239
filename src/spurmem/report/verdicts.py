"""The verdict on each claim of SPEC 5 and 6, read from what the stages wrote, whatever the outcome."""

from __future__ import annotations

from pathlib import Path

from spurmem.report.html import NOT_TESTED, Verdict
from spurmem.report.runs import Run

CLAIMS = {
    "sensitivity": "Sensitivity (SPEC 5.1): a few top-ranked units hurt minority groups far more than majority "
    "groups and than random units",
    "specificity": "Group specificity (SPEC 5.2): units from a group's hardest examples hurt that group most",
    "localisation": "Localisation (SPEC 5.3): a few units carry most of the memorisation",
    "framework": "Framework (SPEC 6): removing spurious memorisation raises test worst-group accuracy over ERM "
    "and the erm-continue control",
}


def claim_verdicts(paths: list[str | Path], runs: list[Run]) -> list[Verdict]:
    return [
        Verdict(CLAIMS["sensitivity"], NOT_TESTED, "", source="run `spurmem probe RUN_DIR`"),
        Verdict(CLAIMS["specificity"], NOT_TESTED, "", source="run `spurmem probe RUN_DIR`"),
        Verdict(CLAIMS["localisation"], NOT_TESTED, "", source="run the unit-level memorisation scan"),
        Verdict(CLAIMS["framework"], NOT_TESTED, "", source="run `spurmem compare`"),
    ]
