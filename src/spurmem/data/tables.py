"""Reading metadata tables (CSV or whitespace-separated) with errors that name the file and line.

Every row keeps its 1-based line number so that a missing field, a non-integer value or a value
out of range is reported as ``metadata.csv line 17, column 'y': ...``. Blank lines are skipped (they
hold no data); any other malformed row is an error, never dropped.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from spurmem.data.schema import DataError


@dataclass
class Table:
    """Rows of string fields with their line numbers, addressed by column name."""

    path: Path
    columns: list[str]
    rows: list[list[str]]
    lines: list[int]

    def __len__(self) -> int:
        return len(self.rows)

    def where(self, row: int) -> str:
        return f"{self.path.name} line {self.lines[row]}"

    def _index(self, name: str) -> int:
        try:
            return self.columns.index(name)
        except ValueError:
            raise DataError(f"{self.path}: no column {name!r}; columns are {self.columns}") from None

    def strings(self, name: str) -> list[str]:
        """The values of column ``name``; an empty value is an error."""
        j = self._index(name)
        values = [row[j].strip() for row in self.rows]
        for i, v in enumerate(values):
            if not v:
                raise DataError(f"{self.path} line {self.lines[i]}: column {name!r} is empty")
        return values

    def ints(self, name: str, allowed: Iterable[int] | None = None, expected: str = "") -> np.ndarray:
        """Column ``name`` as int64; non-integers and values outside ``allowed`` are errors."""
        values = self.strings(name)
        try:
            out = np.array(values, dtype=np.int64)
        except ValueError:
            out = None
        if out is None:
            for i, v in enumerate(values):
                try:
                    int(v)
                except ValueError:
                    raise DataError(
                        f"{self.path} line {self.lines[i]}: column {name!r} should be an integer, got {v!r}"
                    ) from None
            out = np.array([int(v) for v in values], dtype=np.int64)
        if allowed is not None:
            allowed = sorted(set(allowed))
            bad = np.flatnonzero(~np.isin(out, allowed))
            if len(bad):
                i = int(bad[0])
                more = f" ({len(bad) - 1} more rows like it)" if len(bad) > 1 else ""
                raise DataError(
                    f"{self.path} line {self.lines[i]}: column {name!r} is {out[i]}, expected "
                    f"{expected or ' or '.join(map(str, allowed))}{more}"
                )
        return out


def _check_width(path: Path, rows: list[list[str]], lines: list[int], width: int) -> None:
    for row, line in zip(rows, lines):
        if len(row) != width:
            raise DataError(f"{path} line {line}: expected {width} fields, found {len(row)}")


def _open(path: Path, what: str):
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    return open(path, newline="", encoding="utf-8-sig")


def read_csv(path: Path, required: Iterable[str], what: str = "metadata file") -> Table:
    """A comma-separated file with a header line holding at least the ``required`` columns."""
    path = Path(path)
    with _open(path, what) as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: empty file, expected a header line with columns {list(required)}")
        header = [h.strip() for h in header]
        missing = [c for c in required if c not in header]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}; the header has {header}")
        rows, lines = [], []
        for row in reader:
            if not any(field.strip() for field in row):
                continue
            rows.append(row)
            lines.append(reader.line_num)
    _check_width(path, rows, lines, len(header))
    return Table(path, header, rows, lines)


def read_whitespace(
    path: Path, columns: list[str] | None = None, count_line: bool = False, what: str = "list file"
) -> Table:
    """A whitespace-separated file. ``columns`` None: the header is the first line (after the count
    line, when ``count_line``). CelebA's attribute header names every column but the first (file
    name), which is then called ``image_id``."""
    path = Path(path)
    with _open(path, what) as fh:
        numbered = [(i + 1, line.split()) for i, line in enumerate(fh)]
    numbered = [(n, fields) for n, fields in numbered if fields]
    declared = None
    if count_line:
        if not numbered:
            raise DataError(f"{path}: empty file, expected a first line holding the number of rows")
        n, fields = numbered.pop(0)
        try:
            declared = int(fields[0])
        except ValueError:
            raise DataError(f"{path} line {n}: expected the number of rows, got {' '.join(fields)!r}") from None
    if columns is None:
        if not numbered:
            raise DataError(f"{path}: no header line")
        _, columns = numbered.pop(0)
    rows = [fields for _, fields in numbered]
    lines = [n for n, _ in numbered]
    width = len(columns)
    if rows and len(rows[0]) == width + 1:  # header without a name for the first column
        columns = ["image_id", *columns]
    _check_width(path, rows, lines, len(columns))
    if declared is not None and declared != len(rows):
        raise DataError(f"{path}: line 1 declares {declared} rows, the file has {len(rows)}")
    return Table(path, list(columns), rows, lines)
