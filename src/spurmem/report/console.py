"""Tables printed to the terminal (rich), for ``spurmem runs`` and the demo's summary."""

from __future__ import annotations

import pandas as pd
from rich.console import Console
from rich.table import Table

from spurmem.report.tables import format_cell

RUNS_COLUMNS = {
    "name": "run", "status": "status", "algorithm": "algorithm", "seed": "seed", "epochs": "epochs",
    "selection_rule": "selection", "selected_epoch": "sel. epoch", "val_wga": "val WGA", "test_wga": "test WGA", "test_average": "test avg",
    "test_adjusted_average": "test adj. avg", "max_memorization_gap": "max gap",
}


def _console() -> Console:
    """A console that does not squeeze tables into 80 columns when writing to a file or pipe."""
    console = Console()
    return console if console.is_terminal else Console(width=200)


def print_table(frame: pd.DataFrame, title: str, columns: dict[str, str] | None = None,
                console: Console | None = None, digits: int = 3) -> None:
    """Print ``frame`` (the chosen ``columns``, renamed) as a rich table."""
    console = console or _console()
    columns = columns or {c: c for c in frame.columns}
    table = Table(title=title, title_justify="left")
    for key, label in columns.items():
        numeric = key in frame and pd.api.types.is_numeric_dtype(frame[key])
        table.add_column(label, justify="right" if numeric else "left", overflow="fold")
    for _, row in frame.iterrows():
        table.add_row(*(format_cell(row[k], digits) for k in columns))
    console.print(table)


def print_runs_table(frame: pd.DataFrame, console: Console | None = None) -> None:
    """The ``spurmem runs`` listing; accuracies are at each run's selected epoch."""
    console = console or _console()
    if frame.empty:
        console.print("no runs found")
        return
    print_table(frame, f"{len(frame)} run(s); metrics at the selected epoch (avg = plain accuracy, adj. avg = "
                "weighted by training group proportions)", RUNS_COLUMNS, console)


def _pm(mean: float, sd: float) -> str:
    if pd.isna(mean):
        return ""
    return f"{100 * mean:.1f}" + ("" if pd.isna(sd) else f" ± {100 * sd:.1f}")


def print_demo_summary(result, console: Console | None = None) -> None:
    """What the demo found: the verdicts, the comparison (if any), the stages and the report's path."""
    console = console or _console()
    verdicts = result.report.verdict_table().frame
    verdicts = verdicts.assign(claim=verdicts["claim"].str.split(":").str[0])
    print_table(verdicts, "Verdicts on the claims (docs/method.md §5 and 6)",
                {"claim": "claim", "verdict": "verdict", "statistic": "statistic"}, console)
    tables = {t.name: t for t in result.report.tables}
    if "comparison" in tables:
        frame = tables["comparison"].frame
        short = pd.DataFrame({"algorithm": frame["algorithm"], "seeds": frame["seeds"]})
        for label in ("test WGA", "test adjusted avg", "test avg"):
            if f"{label} mean" in frame:
                short[f"{label} (%)"] = [_pm(m, sd) for m, sd in zip(frame[f"{label} mean"], frame[f"{label} sd"])]
        print_table(short, "Algorithm comparison (mean ± sd over seeds, selected epoch)", None, console)
    stages = pd.DataFrame([vars(s) for s in result.stages])
    stages["seconds"] = stages["seconds"].round(1)
    print_table(stages, f"Stages ({result.seconds:.0f} s in all)", None, console, digits=1)
    console.print(f"[bold]Report:[/bold] {result.report_path}")
