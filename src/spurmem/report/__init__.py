"""Reports: figures (matplotlib Agg, PNG/PDF/SVG), a self-contained HTML report with CSV, Markdown and
LaTeX tables, the verdicts on the claims, and the listing of runs (``spurmem runs``)."""

from spurmem.lazy import lazy_exports

_EXPORTS = {
    "build_report": "spurmem.report.build",
    "load_runs": "spurmem.report.build",
    "Run": "spurmem.report.runs",
    "find_runs": "spurmem.report.runs",
    "group_history": "spurmem.report.runs",
    "read_run": "spurmem.report.runs",
    "runs_table": "spurmem.report.runs",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
