"""Reading metadata tables (CSV or whitespace-separated) with errors that name the file and line.

A file with a header but no data rows is an error. Every row keeps its 1-based line number so that a missing field, a non-integer value or a value
out of range is reported as ``metadata.csv line 17, column 'y': ...``. Blank lines are skipped (they
hold no data); any other malformed row is an error, never dropped.

A well-formed file is parsed by pandas' C parser (CelebA's 200k-row attribute list in about a
second); a file with anything unusual in it (a blank line, an empty or missing field, a row of the
wrong width) is re-read by the exact line-by-line parser, which gives the precise message.
"""

from __future__ import annotations

import csv
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from spurmem.data.schema import DataError


@dataclass
class Table:
    """String columns addressed by name, with the line number of each row."""

    path: Path
    columns: list[str]
    data: dict[str, list[str]]  # as read; stripped on first use by strings()
    lines: list[int]
    _stripped: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.lines)

    def where(self, row: int) -> str:
        return f"{self.path.name} line {self.lines[row]}"

    def strings(self, name: str) -> list[str]:
        """The values of column ``name``, stripped; an empty value is an error."""
        if name not in self.data:
            raise DataError(f"{self.path}: no column {name!r}; columns are {self.columns}")
        if name not in self._stripped:
            self._stripped[name] = [v.strip() for v in self.data[name]]
        values = self._stripped[name]
        if not all(values):
            i = next(i for i, v in enumerate(values) if not v)
            raise DataError(f"{self.path} line {self.lines[i]}: column {name!r} is empty")
        return values

    def ints(self, name: str, allowed: Iterable[int] | None = None, expected: str = "") -> np.ndarray:
        """Column ``name`` as int64; non-integers and values outside ``allowed`` are errors."""
        values = self.strings(name)
        try:
            out = np.array(values, dtype=np.int64)
        except ValueError:
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


def _table(path: Path, columns: list[str], rows: list[list[str]], lines: list[int]) -> Table:
    for row, line in zip(rows, lines):
        if len(row) != len(columns):
            raise DataError(f"{path} line {line}: expected {len(columns)} fields, found {len(row)}")
    by_column = list(zip(*rows)) if rows else [()] * len(columns)
    data = {name: list(values) for name, values in zip(columns, by_column)}
    return Table(path, list(columns), data, lines)


def _fast(path: Path, columns: list[str], skip: int, sep: str) -> Table | None:
    """Parse the rows after the first ``skip`` lines with pandas; None when anything is unusual."""
    import pandas as pd

    try:
        df = pd.read_csv(
            path, sep=sep, header=None, names=columns, skiprows=skip, dtype=object, na_filter=False,
            skip_blank_lines=False, encoding="utf-8-sig", engine="c",
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError):
        return None
    if not isinstance(df.index, pd.RangeIndex) or list(df.columns) != columns:
        return None  # rows wider than the header were turned into an index
    data = {}
    for name in columns:
        values = df[name].tolist()
        if not all(isinstance(v, str) for v in values[:1]) or not all(values):
            return None  # blank line, empty or missing field: let the exact parser say where
        data[name] = values
    return Table(path, list(columns), data, list(range(skip + 1, skip + 1 + len(df))))


def _with_rows(table: Table) -> Table:
    if not len(table):
        raise DataError(f"{table.path}: no data rows after the header; expected one row per image")
    return table


def _open(path: Path, what: str):
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    return open(path, newline="", encoding="utf-8-sig")


@contextmanager
def _readable(path: Path, what: str):
    """Undecodable bytes, a NUL byte or an unreadable file become a DataError naming the file."""
    try:
        yield
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: {what} is not UTF-8 text (byte {exc.start}); a binary file?") from None
    except csv.Error as exc:
        raise DataError(f"{path}: {what} is not a readable CSV ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the {what} ({exc.strerror or type(exc).__name__})") from None


def read_csv(path: Path, required: Iterable[str], what: str = "metadata file") -> Table:
    """A comma-separated file with a header line holding at least the ``required`` columns."""
    path = Path(path)
    with _readable(path, what):
        return _read_csv(path, list(required), what)


def _read_csv(path: Path, required: list[str], what: str) -> Table:
    with _open(path, what) as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: empty file, expected a header line with columns {list(required)}")
        header = [h.strip() for h in header]
        missing = [c for c in required if c not in header]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}; the header has {header}")
        if reader.line_num == 1 and len(set(header)) == len(header):
            fast = _fast(path, header, 1, ",")
            if fast is not None:
                return _with_rows(fast)
        rows, lines = [], []
        for row in reader:
            if not any(field.strip() for field in row):
                continue
            rows.append(row)
            lines.append(reader.line_num)
    return _with_rows(_table(path, header, rows, lines))


def read_whitespace(
    path: Path, columns: list[str] | None = None, count_line: bool = False, what: str = "list file"
) -> Table:
    """A whitespace-separated file. ``columns`` None: the header is the first line (after the count
    line, when ``count_line``). CelebA's attribute header names every column but the first (file
    name), which is then called ``image_id``."""
    path = Path(path)
    with _readable(path, what):
        return _read_whitespace(path, columns, count_line, what)


def _read_whitespace(path: Path, columns: list[str] | None, count_line: bool, what: str) -> Table:
    with _open(path, what) as fh:
        head = [fh.readline() for _ in range(int(count_line) + int(columns is None) + 1)]
    fields = [line.split() for line in head]
    skip = len(head) - 1
    if all(f for f in fields[:skip]):  # the header lines are where they should be: try the fast path
        declared = _declared(path, fields[0], 1) if count_line else None
        cols = list(columns) if columns is not None else fields[skip - 1]
        if fields[skip] and len(fields[skip]) == len(cols) + 1:
            cols = ["image_id", *cols]
        if len(set(cols)) == len(cols):
            fast = _fast(path, cols, skip, r"\s+")
            if fast is not None:
                _check_declared(path, declared, len(fast))
                return _with_rows(fast)

    with _open(path, what) as fh:
        numbered = [(i + 1, line.split()) for i, line in enumerate(fh)]
    numbered = [(n, f) for n, f in numbered if f]
    declared = None
    if count_line:
        if not numbered:
            raise DataError(f"{path}: empty file, expected a first line holding the number of rows")
        n, first = numbered.pop(0)
        declared = _declared(path, first, n)
    if columns is None:
        if not numbered:
            raise DataError(f"{path}: no header line")
        _, columns = numbered.pop(0)
    if not numbered:
        raise DataError(f"{path}: no data rows after the header; expected one row per image")
    rows = [f for _, f in numbered]
    lines = [n for n, _ in numbered]
    if rows and len(rows[0]) == len(columns) + 1:  # header without a name for the first column
        columns = ["image_id", *columns]
    table = _table(path, list(columns), rows, lines)
    _check_declared(path, declared, len(table))
    return table


def _declared(path: Path, fields: list[str], line: int) -> int:
    try:
        return int(fields[0])
    except (ValueError, IndexError):
        raise DataError(f"{path} line {line}: expected the number of rows, got {' '.join(fields)!r}") from None


def _check_declared(path: Path, declared: int | None, n: int) -> None:
    if declared is not None and declared != n:
        raise DataError(f"{path}: line 1 declares {declared} rows, the file has {n}")
