"""`celeba`: the standard CelebA folder, any target and spurious attribute by name (docs/method.md §8).

The folder holds ``img_align_celeba/`` and the attribute and partition lists, each either in the
original text form (``list_attr_celeba.txt``: a count line, a header line of attribute names, then
one row per image with values -1/1; ``list_eval_partition.txt``: image and 0/1/2 per line) or the
CSV form (``list_attr_celeba.csv`` with an image_id column; ``list_eval_partition.csv`` with
image_id, partition). y = 1 where the target attribute is 1; a = 1 where the spurious one is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spurmem.data.image_cache import DEFAULT_MAX_PIXELS
from spurmem.data.known_counts import ExpectCounts, celeba_key
from spurmem.data.image_folder import FolderRecords, build_folder_dataset, check_folder
from spurmem.data.schema import DataError, GroupDataset
from spurmem.data.tables import Table, read_csv, read_whitespace


def _find(folder: Path, stem: str) -> Path:
    for suffix in (".txt", ".csv"):
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    raise DataError(f"celeba: neither {stem}.txt nor {stem}.csv found in {folder}")


def _read(path: Path, txt_columns: list[str] | None, count_line: bool, what: str) -> Table:
    if path.suffix == ".csv":
        return read_csv(path, ["image_id"], what)
    return read_whitespace(path, txt_columns, count_line=count_line, what=what)


def _attribute(table: Table, name: str, role: str) -> np.ndarray:
    if name not in table.columns[1:]:
        import difflib

        near = difflib.get_close_matches(name, table.columns[1:], n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise DataError(f"celeba: {role} attribute {name!r} is not in {table.path}{hint}")
    return (table.ints(name, (-1, 1), "-1 or 1") == 1).astype(np.int64)


def load_celeba(
    root: str | None = None,
    target: str = "Blond_Hair",
    spurious: str = "Male",
    size: int = 224,
    resize: str = "center-crop",
    normalize: str = "imagenet",
    cache_dir: str | None = None,
    progress: bool = True,
    allow_outside_root: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    train_resize: str | None = None,
    expect_counts: ExpectCounts = "auto",
    strict_counts: bool = False,
) -> GroupDataset:
    """CelebA from ``root``: y = ``target`` attribute, a = ``spurious`` attribute; images decoded
    once at ``size`` px (centre square of the aligned 178x218 faces by default) into the cache.
    Image paths must lie inside ``root`` unless ``allow_outside_root``; images above ``max_pixels``
    are refused. ``train_resize``: the training split's own resize rule (default ``resize``). With
    Blond_Hair x Male the group counts are checked against the published ones (``expect_counts``
    auto/true/false, ``strict_counts``: :mod:`spurmem.data.known_counts`)."""
    folder = check_folder(root, "celeba")
    images_dir = folder / "img_align_celeba"
    if (images_dir / "img_align_celeba").is_dir():  # the layout of the common Kaggle archive
        images_dir = images_dir / "img_align_celeba"
    if not images_dir.is_dir():
        raise DataError(f"celeba: image folder not found: {folder / 'img_align_celeba'}")
    attrs = _read(_find(folder, "list_attr_celeba"), None, True, "CelebA attribute list")
    parts = _read(_find(folder, "list_eval_partition"), ["image_id", "partition"], False, "CelebA partition list")
    if target == spurious:
        raise DataError(f"celeba: target and spurious attribute are both {target!r}")
    y = _attribute(attrs, target, "target")
    a = _attribute(attrs, spurious, "spurious")
    names = attrs.strings("image_id")
    part_of = dict(zip(parts.strings("image_id"), parts.ints("partition", (0, 1, 2), "0, 1 or 2 (train, val, test)")))
    if len(part_of) != len(parts):
        raise DataError(f"{parts.path}: some images are listed more than once")
    missing = [i for i, n in enumerate(names) if n not in part_of]
    if missing:
        raise DataError(f"{attrs.where(missing[0])}: image {names[missing[0]]!r} has no partition in {parts.path}"
                        + (f" ({len(missing) - 1} more)" if len(missing) > 1 else ""))
    extra = set(part_of) - set(names)
    if extra:
        raise DataError(f"{parts.path}: {len(extra)} image(s) have a partition but no attributes in {attrs.path}, "
                        f"e.g. {sorted(extra)[0]!r}")
    rec = FolderRecords(
        paths=[images_dir / n for n in names], ids=names, y=y, a=a,
        split=np.array([part_of[n] for n in names], dtype=np.int64),
        origins=[attrs.where(i) for i in range(len(attrs))], described_in=f"{attrs.path} + {parts.path}",
    )
    return build_folder_dataset(
        "celeba", rec, [f"not {target}", target], [f"not {spurious}", spurious], size=size, resize=resize,
        normalize=normalize, cache_dir=cache_dir, progress=progress,
        source=f"CelebA folder {folder} ({attrs.path.name}, {parts.path.name})",
        params={"root": str(folder), "target": target, "spurious": spurious},
        root=folder, allow_outside_root=allow_outside_root, max_pixels=max_pixels,
        train_resize=train_resize, benchmark=celeba_key(target, spurious), expect_counts=expect_counts, strict_counts=strict_counts,
    )
