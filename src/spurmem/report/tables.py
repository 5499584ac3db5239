"""Report tables: a tidy frame with a name, a title and a caption, written as CSV, Markdown and LaTeX.

The CSV keeps full precision (for re-analysis); Markdown, LaTeX and HTML round for reading. Markdown
and LaTeX (booktabs) are produced here rather than through ``DataFrame.to_markdown``/``to_latex`` so
that no optional dependency (tabulate, jinja2) is needed. In HTML every table scrolls sideways
inside its own box, and a wide or long one is folded into ``<details>``, so none overflows the page.
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
    fold: bool | None = None  # HTML: inside a closed <details>; None: when wider or longer than the limits

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


def _breakable(text: str) -> str:
    """Escaped header text that may wrap after ``_`` and ``/`` (``test_adjusted_average``), not inside words."""
    return html.escape(text).replace("_", "_<wbr>").replace("/", "/<wbr>")


WIDE_COLUMNS = 10  # HTML tables with more columns are folded (and set smaller)
LONG_ROWS = 25  # ... and so are tables with more rows


def to_html(table: ReportTable) -> str:
    """An HTML ``<table>`` with the caption inside (escaped; numbers right-aligned)."""
    frame, more = table.shown()
    head = "".join(f"<th>{_breakable(str(c))}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for v in row:
            cls = ' class="num"' if isinstance(v, numbers.Real) and not isinstance(v, bool) else ""
            cells.append(f"<td{cls}>{html.escape(format_cell(v, table.digits))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    wide = len(frame.columns) > WIDE_COLUMNS
    block = (
        f'<div class="table-wrap"><table id="table-{html.escape(table.name)}" class="data{" wide" if wide else ""}">'
        f"<caption><b>{html.escape(table.title)}.</b> {html.escape(table.caption + more)}</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )
    fold = table.fold if table.fold is not None else (wide or len(frame) > LONG_ROWS)
    if not fold:
        return block
    return (f'<details class="table-fold"><summary><b>{html.escape(table.title)}</b> ({len(frame)} rows x '
            f"{len(frame.columns)} columns; click to show)</summary>{block}</details>")


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    r"""``text`` with LaTeX's special characters escaped; ``±`` as ``$\pm$``."""
    out = "".join(_LATEX_SPECIAL.get(c, c) for c in str(text))
    return out.replace("±", r"$\pm$")


def to_latex(table: ReportTable) -> str:
    r"""A ``table`` environment (booktabs rules; needs ``\usepackage{booktabs}``) with every row of the
    displayed view, numbers right-aligned, the caption and ``\label{tab:<name>}``."""
    frame = table.display if table.display is not None else table.frame
    frame = frame if table.columns is None else frame[table.columns]
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
               for c in frame.columns]
    lines = [
        f"% {table.name}: generated by spurmem; needs \\usepackage{{booktabs}}",
        "\\begin{table}[t]", "\\centering", "\\small",
        f"\\caption{{{latex_escape(table.title)}. {latex_escape(table.caption)}}}",
        f"\\label{{tab:{table.name}}}",
        "\\begin{tabular}{" + "".join("r" if n else "l" for n in numeric) + "}", "\\toprule",
        " & ".join(latex_escape(c) for c in frame.columns) + r" \\", "\\midrule",
    ]
    for row in frame.itertuples(index=False):
        lines.append(" & ".join(latex_escape(format_cell(v, table.digits)) for v in row) + r" \\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(lines)


def table_files(table: ReportTable, folder: str = "") -> dict[str, str]:
    """``<folder>/<name>.csv`` (full precision), ``<folder>/<name>.md`` and ``<folder>/<name>.tex``:
    relative path -> text."""
    prefix = f"{folder}/" if folder else ""
    return {f"{prefix}{table.name}.csv": table.frame.to_csv(index=False),
            f"{prefix}{table.name}.md": to_markdown(table, all_rows=True),
            f"{prefix}{table.name}.tex": to_latex(table)}

