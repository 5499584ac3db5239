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

import pandas as pd



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


def md_text(text: object) -> str:
    """Text for Markdown with HTML escaped (``<``, ``>``, ``&``): run and group names come from
    users and datasets, and Markdown renderers pass raw HTML through."""
    return html.escape(str(text), quote=False)


def to_markdown(table: ReportTable, all_rows: bool = False) -> str:
    """A GitHub-flavoured Markdown table preceded by its title and followed by its caption (HTML escaped)."""
    frame, more = (table.frame, "") if all_rows else table.shown()
    head = [md_text(c).replace("|", "\\|") for c in frame.columns]
    lines = [f"### {md_text(table.title)}", "", "| " + " | ".join(head) + " |",
             "|" + "|".join("---" for _ in head) + "|"]
    for row in frame.itertuples(index=False):
        cells = [md_text(format_cell(v, table.digits)).replace("|", "\\|") for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", md_text(table.caption + more), ""]
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


def table_files(table: ReportTable, folder: str = "") -> dict[str, str]:
    """``<folder>/<name>.csv`` (full precision) and ``<folder>/<name>.md``: relative path -> text."""
    prefix = f"{folder}/" if folder else ""
    return {f"{prefix}{table.name}.csv": table.frame.to_csv(index=False),
            f"{prefix}{table.name}.md": to_markdown(table, all_rows=True)}

