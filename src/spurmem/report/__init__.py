"""Reports: figures (matplotlib Agg, PNG), a self-contained HTML report with CSV and Markdown tables,
the verdicts on the claims, and the listing of runs (``spurmem runs``)."""

from spurmem.report.build import build_report, load_runs
from spurmem.report.runs import Run, find_runs, group_history, read_run, runs_table

__all__ = ["Run", "build_report", "find_runs", "group_history", "load_runs", "read_run", "runs_table"]
