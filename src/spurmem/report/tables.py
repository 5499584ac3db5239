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
    max_rows: int | None = None  # HTML and report.md show this many rows; the CSV and <name>.md hold all
    columns: list[str] | None = None  # HTML and report.md show these columns; the CSV holds all
    display: pd.DataFrame | None = None  # a reshaped view (e.g. wide) shown instead of the tidy frame

    def shown(self) -> tuple[pd.DataFrame, str]:
        """The rows and columns to display and, when some are left out, a sentence saying where they are."""
        frame = self.display if self.display is not None else self.frame
        frame = frame if self.columns is None else frame[self.columns]
        if self.max_rows is None or len(frame) <= self.max_rows:
            return frame, ""
        return frame.head(self.max_rows), (f" Showing the first {self.max_rows} of {len(frame)} rows; "
                                           f"all are in tables/{self.name}.csv.")


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


def to_markdown(table: ReportTable, all_rows: bool = False) -> str:
    """A GitHub-flavoured Markdown table preceded by its title and followed by its caption."""
    frame, more = (table.frame, "") if all_rows else table.shown()
    head = [str(c) for c in frame.columns]
    lines = [f"### {table.title}", "", "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for row in frame.itertuples(index=False):
        cells = [format_cell(v, table.digits).replace("|", "\\|") for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", table.caption + more, ""]
    return "\n".join(lines)


def to_html(table: ReportTable) -> str:
    """An HTML ``<table>`` with the caption inside (escaped; numbers right-aligned)."""
    frame, more = table.shown()
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
        f"<caption><b>{html.escape(table.title)}.</b> {html.escape(table.caption + more)}</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def write_table(table: ReportTable, folder: str | Path) -> tuple[Path, Path]:
    """Write ``<name>.csv`` (full precision) and ``<name>.md`` into ``folder``; returns both paths."""
    folder = Path(folder)
    csv_path = write_text_atomic(folder / f"{table.name}.csv", table.frame.to_csv(index=False))
    md_path = write_text_atomic(folder / f"{table.name}.md", to_markdown(table, all_rows=True))
    return csv_path, md_path
