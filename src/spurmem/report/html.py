"""The self-contained report: one HTML file (figures embedded as base64 PNG, inline CSS, no scripts,
opens from disk with no server) plus the same figures as PNG, PDF and SVG files and the same tables as
CSV, Markdown and LaTeX, and ``report.md`` tying them together.

The report opens with the verdicts on the claims (docs/method.md §5 and §6), whatever their outcome, then one
section per kind of evidence. A section whose inputs do not exist says so and how to produce them.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from spurmem import __version__
from spurmem.record import utc_now
from spurmem.report.figures import ReportFigure
from spurmem.report.tables import ReportTable, md_text, table_files, to_html, to_markdown

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NOT_TESTED = "supported", "not supported", "inconclusive", "not tested"
NOT_TESTABLE = "not testable"  # run, but a precondition failed (nothing to find, floor, too few draws/seeds)
STATUSES = (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NOT_TESTABLE, NOT_TESTED)


@dataclass
class Verdict:
    """The answer to one claim: ``status`` is supported / not supported / inconclusive (too little
    evidence to decide, e.g. one seed) / not testable (a precondition failed; the reason says which) /
    not tested."""

    claim: str
    status: str
    statistic: str
    outcome: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"verdict status {self.status!r} is not one of {', '.join(STATUSES)}")


@dataclass
class Section:
    """A titled part of the report: free text, figures, tables, and notes on what is missing."""

    title: str
    intro: str = ""
    figures: list[ReportFigure] = field(default_factory=list)
    tables: list[ReportTable] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


@dataclass
class Report:
    """Everything a report holds; :func:`write_report` turns it into files."""

    title: str
    verdicts: list[Verdict]
    sections: list[Section]
    runs: list[str] = field(default_factory=list)
    setting: str = ""  # one paragraph: data, model, algorithms and seeds the report covers
    created: str = field(default_factory=utc_now)

    @property
    def figures(self) -> list[ReportFigure]:
        return [f for s in self.sections for f in s.figures]

    @property
    def tables(self) -> list[ReportTable]:
        return [t for s in self.sections for t in s.tables]

    def verdict_table(self) -> ReportTable:
        frame = pd.DataFrame(
            [{"claim": v.claim, "verdict": v.status, "outcome": v.outcome, "statistic": v.statistic,
              "source": v.source} for v in self.verdicts],
            columns=["claim", "verdict", "outcome", "statistic", "source"],
        )
        return ReportTable("verdicts", "Verdicts on the claims", "Each claim of docs/method.md §5 and 6 as tested on these "
                           f"runs; 'not tested' names the command that would test it. {FINDINGS_NOTE}: "
                           f"{findings_location()}.", frame)


FINDINGS_NOTE = ("What the same claims gave on other models (the small CNN, a ResNet-18, MobileNetV2 ImageNet-pretrained "
                 "and from scratch), each row with its command")


def findings_location() -> str:
    """Where the findings write-up is: its absolute path in a source checkout, else its repository path."""
    local = Path(__file__).resolve().parents[3] / "docs" / "findings.md"
    return str(local) if local.is_file() else "docs/findings.md in the spurmem source repository"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1180px;margin:2em auto;
padding:0 1.2em;color:#222;line-height:1.45}
h1{font-size:1.7em;margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
.meta{color:#666;font-size:.9em}
.table-wrap{overflow-x:auto;max-width:100%;margin:1em 0}
table.data{border-collapse:collapse;font-size:.86em}
table.data.wide{font-size:.78em}
details.table-fold{margin:1em 0;border:1px solid #e3e3e3;padding:.3em .6em;background:#fafafa}
details.table-fold summary{cursor:pointer;color:#333}
table.data th,table.data td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
table.data td{overflow-wrap:anywhere}
table.data td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap;overflow-wrap:normal}
table.data caption{caption-side:bottom;text-align:left;color:#555;font-size:.92em;padding-top:.4em}
table.data thead{background:#f3f3f3}
.verdicts td[class^="v-"]{white-space:nowrap;overflow-wrap:normal}
.verdicts td.v-supported{background:#d9f2d9;font-weight:600}
.verdicts td.v-not-supported{background:#f8d7d7;font-weight:600}
.verdicts td.v-inconclusive{background:#fff3cd;font-weight:600}
.verdicts td.v-not-tested{background:#eee;color:#555}
.verdicts td.v-not-testable{background:#eee;color:#555;font-weight:600}
figure{margin:1.2em 0;border:1px solid #e3e3e3;padding:.6em;background:#fff}
figure img{max-width:100%;height:auto;display:block}
figcaption{color:#444;font-size:.9em;margin-top:.4em}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.4em .8em;margin:.6em 0;font-size:.92em}
nav ul{columns:2;font-size:.92em}
code{background:#f4f4f4;padding:0 .25em}
"""


def _esc(text: str) -> str:
    """Escape, then allow `code` spans (backticks) for command names."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _verdicts_html(report: Report) -> str:
    rows = []
    for v in report.verdicts:
        cls = "v-" + v.status.replace(" ", "-")
        rows.append(
            f"<tr><td>{_esc(v.claim)}</td><td class=\"{cls}\">{_esc(v.status)}</td><td>{_esc(v.outcome)}</td>"
            f"<td>{_esc(v.statistic)}</td><td>{_esc(v.source)}</td></tr>"
        )
    return (
        '<section id="verdicts"><h2>Verdicts on the claims</h2><div class="table-wrap">'
        '<table id="table-verdicts" class="data verdicts"><thead><tr><th>claim</th><th>verdict</th>'
        "<th>outcome</th><th>statistic</th><th>source</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody><caption>Each claim of docs/method.md §5 (sensitivity, group specificity, localisation) and docs/method.md §6 "
        "(the framework) as tested on these runs, whatever the outcome. A claim can fail on a given model "
        f"and dataset; 'not tested' names the command that would test it. {html.escape(FINDINGS_NOTE)}: "
        f"{_findings_link()}.</caption></table></div></section>"
    )


def _findings_link() -> str:
    where = findings_location()
    if where.startswith("/"):
        return f'<a href="{html.escape(Path(where).as_uri())}">docs/findings.md</a>'
    return html.escape(where)


def _figure_html(fig: ReportFigure) -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    return (
        f'<figure id="figure-{html.escape(fig.name)}"><img alt="{html.escape(fig.title)}" '
        f'src="data:image/png;base64,{data}"><figcaption><b>{html.escape(fig.title)}.</b> '
        f"{_esc(fig.caption)}</figcaption></figure>"
    )


def render_html(report: Report) -> str:
    """The report as one HTML document with everything embedded."""
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>{html.escape(report.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(report.title)}</h1>",
        f"<p class=\"meta\">spurmem {__version__} &middot; written {html.escape(report.created)} &middot; "
        f"{len(report.runs)} run(s): {html.escape(', '.join(report.runs))}</p>",
        f"<p>{_esc(report.setting)}</p>" if report.setting else "",
        _verdicts_html(report),
        "<nav><h2>Contents</h2><ul>"
        + "".join(f'<li><a href="#{s.anchor}">{html.escape(s.title)}</a></li>' for s in report.sections)
        + "</ul></nav>",
    ]
    for s in report.sections:
        parts.append(f'<section id="{s.anchor}"><h2>{html.escape(s.title)}</h2>')
        if s.intro:
            parts.append(f"<p>{_esc(s.intro)}</p>")
        parts += [f'<p class="note">{_esc(n)}</p>' for n in s.notes]
        parts += [_figure_html(f) for f in s.figures]
        parts += [to_html(t) for t in s.tables]
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(report: Report) -> str:
    """The report as Markdown: the same text and tables, figures linked from ``figures/``."""
    lines = [f"# {md_text(report.title)}", "", f"spurmem {__version__}, written {report.created}; runs: "
             f"{md_text(', '.join(report.runs))}", "", *([md_text(report.setting), ""] if report.setting else []),
             to_markdown(report.verdict_table(), all_rows=True)]
    for s in report.sections:
        lines += [f"## {md_text(s.title)}", ""]
        if s.intro:
            lines += [md_text(s.intro), ""]
        lines += [f"> {md_text(n)}\n" for n in s.notes]
        for f in s.figures:
            vector = ", ".join(f"[{fmt.upper()}](figures/{f.name}.{fmt})" for fmt in f.vector)
            lines += [f"![{md_text(f.title)}](figures/{f.name}.png)", "", f"*{md_text(f.title)}.* {md_text(f.caption)}"
                      + (f" ({vector})" if vector else ""), ""]
        lines += [to_markdown(t) for t in s.tables]
    return "\n".join(lines)


def write_report(report: Report, out_dir: str | Path) -> Path:
    """Write ``report.html``, ``report.md``, ``figures/*.png|pdf|svg`` and ``tables/*.csv|md|tex``;
    returns the HTML path. The files are one set (``report.manifest.json`` last, ``spurmem.fileset``),
    written under the folder's lock, the HTML last of the files."""
    from spurmem.fileset import write_set
    from spurmem.locks import folder_lock

    out = Path(out_dir)
    names = [f.name for f in report.figures]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"two figures share the file name(s) {sorted(dup)}")
    files: dict[str, str | bytes] = {f"figures/{fig.name}.png": fig.png for fig in report.figures}
    files.update({f"figures/{fig.name}.{fmt}": data for fig in report.figures for fmt, data in fig.vector.items()})
    for table in [report.verdict_table(), *report.tables]:
        files.update(table_files(table, "tables"))
    files["report.md"] = render_markdown(report)
    files["report.html"] = render_html(report)
    with folder_lock(out, "report"):
        # Files of an earlier report in the same folder would be mistaken for this one's.
        for stale in [p for pattern in ("figures/*.png", "figures/*.pdf", "figures/*.svg", "tables/*.csv",
                                        "tables/*.md", "tables/*.tex") for p in out.glob(pattern)]:
            if stale.relative_to(out).as_posix() not in files:
                stale.unlink()
        write_set(out, "report", files)
    return out / "report.html"
