"""Report tables: a tidy frame with a name, a title and a caption, written as CSV and Markdown.

The CSV keeps full precision (for re-analysis); Markdown and HTML round for reading. Markdown is
produced here rather than through ``DataFrame.to_markdown`` so that no optional dependency
(tabulate) is needed.
"""

from __future__ import annotations

import html
import math
import numbers
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from spurmem.record import write_text_atomic


@dataclass
class ReportTable:
    """A named table: ``name`` is the file stem, ``caption`` says how the numbers were made."""

    name: str
    title: str
    caption: str
    frame: pd.DataFrame
    digits: int = 3


def format_cell(value: object, digits: int = 3) -> str:
    """Readable text for one cell: rounded floats, empty for missing values."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value != 0 and abs(value) < 10 ** (-digits):
            return f"{value:.1e}"
        return f"{value:.{digits}f}"
    return str(value)


def to_markdown(table: ReportTable) -> str:
    """A GitHub-flavoured Markdown table preceded by its title and followed by its caption."""
    frame = table.frame
    head = [str(c) for c in frame.columns]
    lines = [f"### {table.title}", "", "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for row in frame.itertuples(index=False):
        cells = [format_cell(v, table.digits).replace("|", "\\|") for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", table.caption, ""]
    return "\n".join(lines)


def to_html(table: ReportTable) -> str:
    """An HTML ``<table>`` with the caption inside (escaped; numbers right-aligned)."""
    frame = table.frame
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for v in row:
            cls = ' class="num"' if isinstance(v, numbers.Real) and not isinstance(v, bool) else ""
            cells.append(f"<td{cls}>{html.escape(format_cell(v, table.digits))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<div class="table-wrap"><table id="table-{html.escape(table.name)}" class="data">'
        f"<caption><b>{html.escape(table.title)}.</b> {html.escape(table.caption)}</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def write_table(table: ReportTable, folder: str | Path) -> tuple[Path, Path]:
    """Write ``<name>.csv`` (full precision) and ``<name>.md`` into ``folder``; returns both paths."""
    folder = Path(folder)
    csv_path = write_text_atomic(folder / f"{table.name}.csv", table.frame.to_csv(index=False))
    md_path = write_text_atomic(folder / f"{table.name}.md", to_markdown(table))
    return csv_path, md_path
