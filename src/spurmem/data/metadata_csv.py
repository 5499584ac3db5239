"""`metadata-csv`: a user's own group-labelled images listed in one CSV file.

Columns ``path, y, a, split``: path relative to the CSV's folder (or ``root``), y and a integers
from 0, split ``train``/``val``/``test`` or ``0``/``1``/``2``. Class and attribute names are
optional parameters (a list or a comma-separated string); without them the numbers of classes and
attributes are taken from the largest values present. Every path, resolved (``..``, absolute
paths, symlinks), must lie inside the root unless ``allow_outside_root=true``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spurmem.data.image_cache import DEFAULT_MAX_PIXELS
from spurmem.data.image_folder import FolderRecords, build_folder_dataset
from spurmem.data.schema import SPLITS, DataError, GroupDataset
from spurmem.data.tables import Table, read_csv


def _names(value: list[str] | str | None, what: str) -> list[str] | None:
    if value is None:
        return None
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v) for v in value]
    if len(names) < 2 or any(not n for n in names):
        raise DataError(f"metadata-csv: {what} must list at least two non-empty names, got {value!r}")
    return names


def _labels(table: Table, column: str, names: list[str] | None, what: str) -> tuple[np.ndarray, list[str]]:
    values = table.ints(column)
    negative = np.flatnonzero(values < 0)
    if len(negative):
        i = int(negative[0])
        raise DataError(f"{table.where(i)}: column {column!r} is {values[i]}, expected an integer >= 0")
    if names is None:
        names = [f"{what}{k}" for k in range(max(int(values.max()) + 1, 2))]
    values = table.ints(column, range(len(names)), f"0..{len(names) - 1} (one of {names})")
    return values, names


def _splits(table: Table) -> np.ndarray:
    index = {**{name: i for i, name in enumerate(SPLITS)}, **{str(i): i for i in range(len(SPLITS))}}
    out = np.empty(len(table), dtype=np.int64)
    for i, value in enumerate(table.strings("split")):
        if value.lower() not in index:
            raise DataError(f"{table.where(i)}: column 'split' is {value!r}, expected train, val, test or 0, 1, 2")
        out[i] = index[value.lower()]
    return out


def load_metadata_csv(
    csv: str | None = None,
    root: str | None = None,
    class_names: list[str] | str | None = None,
    attr_names: list[str] | str | None = None,
    size: int = 224,
    resize: str = "center-crop",
    normalize: str = "imagenet",
    cache_dir: str | None = None,
    progress: bool = True,
    allow_outside_root: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> GroupDataset:
    """Images listed in ``csv`` (columns path, y, a, split); paths relative to ``root`` (default: the
    CSV's folder). Decoded once at ``size`` px into the cache."""
    if not csv:
        raise DataError("metadata-csv: give the metadata file as csv=PATH (columns path, y, a, split)")
    table = read_csv(Path(csv).expanduser().resolve(), ["path", "y", "a", "split"], "metadata CSV")
    base = (Path(root).expanduser() if root else table.path.parent).resolve()
    if not base.is_dir():
        raise DataError(f"metadata-csv: image root folder not found: {base}")
    y, classes = _labels(table, "y", _names(class_names, "class_names"), "class")
    a, attrs = _labels(table, "a", _names(attr_names, "attr_names"), "attr")
    files = table.strings("path")
    rec = FolderRecords(
        paths=[base / f for f in files], ids=files, y=y, a=a, split=_splits(table),
        origins=[table.where(i) for i in range(len(table))], described_in=str(table.path),
    )
    return build_folder_dataset(
        "metadata-csv", rec, classes, attrs, size=size, resize=resize, normalize=normalize, cache_dir=cache_dir,
        progress=progress, source=f"metadata CSV {table.path}",
        params={"csv": str(table.path), "root": str(base), "class_names": classes, "attr_names": attrs},
        root=base, allow_outside_root=allow_outside_root, max_pixels=max_pixels,
    )
