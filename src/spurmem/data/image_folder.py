"""Turning a folder of image files plus per-image labels into a :class:`GroupDataset`.

Shared by the ``waterbirds``, ``celeba`` and ``metadata-csv`` loaders: they parse their own metadata
into :class:`FolderRecords`; this module confines the image paths to the dataset root (every path,
symlinks resolved, must lie inside it unless ``allow_outside_root``), checks the groups, decodes the
images through the cache
(ordered by split, so that each split is a contiguous, memory-mapped slice) and builds the splits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spurmem.data.image_cache import DEFAULT_MAX_PIXELS, RESIZE_RULES, decoded_images
from spurmem.data.known_counts import ExpectCounts, check_known_counts
from spurmem.data.schema import SPLITS, DataError, GroupDataset, SplitData, group_index
from spurmem.data.spurious import channel_stats

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALIZATIONS = ("imagenet", "train")
STATS_SAMPLE = 5000  # training images used for normalize="train" statistics


@dataclass
class FolderRecords:
    """Per-image metadata: file paths, ids, labels, attributes, split index (0/1/2 = train/val/test)
    and where each row was read (``metadata.csv line 7``) for error messages."""

    paths: list[Path]
    ids: list[str]
    y: np.ndarray
    a: np.ndarray
    split: np.ndarray
    origins: list[str]
    described_in: str  # the metadata file(s), for messages


def check_folder(root: str | os.PathLike | None, what: str) -> Path:
    if root is None or str(root) == "":
        raise DataError(f"{what}: give the dataset folder as root=PATH")
    path = Path(root).expanduser().resolve()
    if not path.is_dir():
        raise DataError(f"{what}: folder not found: {path}")
    return path


def _check_confined(rec: FolderRecords, root: Path) -> None:
    """Every image path, resolved (``..``, absolute paths and symlinks followed), lies inside ``root``.

    Each distinct parent folder is resolved once and listed once for its symlinks, so only linked
    files are resolved one by one (CelebA's 200k files in one folder cost one ``scandir``)."""
    root = Path(os.path.realpath(root))
    real_parents: dict[str, str] = {}
    links: dict[str, set[str] | None] = {}
    for i, path in enumerate(rec.paths):
        parent, name = os.path.split(os.fspath(path))
        if parent not in real_parents:
            real_parents[parent] = os.path.realpath(parent)
            links.setdefault(real_parents[parent], _symlink_names(real_parents[parent]))
        real_parent = real_parents[parent]
        linked = links[real_parent]
        if name in ("", ".", "..") or linked is None or name in linked:
            real = Path(os.path.realpath(path))
        else:
            real = Path(real_parent, name)
        if not real.is_relative_to(root):
            raise DataError(f"{rec.origins[i]}: image {rec.ids[i]!r} is outside the dataset root {root} "
                            f"(it resolves to {real}); pass the dataset parameter allow_outside_root=true "
                            "if that is intended")


def _symlink_names(folder: str) -> set[str] | None:
    """Names of the symlinks in ``folder`` (from the directory entries, no stat); None if unlistable."""
    try:
        with os.scandir(folder) as entries:
            return {e.name for e in entries if e.is_symlink()}
    except OSError:
        return None


def _check_unique(rec: FolderRecords) -> None:
    seen: dict[Path, int] = {}
    for i, path in enumerate(rec.paths):
        if path in seen:
            raise DataError(f"{rec.origins[i]}: image {rec.ids[i]!r} is already listed at {rec.origins[seen[path]]}")
        seen[path] = i


def _check_groups(rec: FolderRecords, class_names: list[str], attr_names: list[str]) -> None:
    n_attrs = len(attr_names)
    for s, split_name in enumerate(SPLITS):
        if not np.any(rec.split == s):
            raise DataError(
                f"{rec.described_in}: split {split_name!r} is empty (no rows with split {s} / {split_name!r})"
            )
    g = group_index(rec.y, rec.a, n_attrs)
    train_counts = np.bincount(g[rec.split == 0], minlength=len(class_names) * n_attrs)
    absent = np.flatnonzero(train_counts == 0)
    if len(absent):
        names = [f"g{k} ({class_names[k // n_attrs]}/{attr_names[k % n_attrs]})" for k in absent]
        raise DataError(
            f"{rec.described_in}: group(s) {', '.join(names)} have no training examples; every group "
            "needs training examples to define majority/minority and train on it"
        )


def build_folder_dataset(
    name: str,
    rec: FolderRecords,
    class_names: list[str],
    attr_names: list[str],
    *,
    size: int,
    resize: str,
    normalize: str,
    cache_dir: str | None,
    progress: bool,
    source: str,
    params: dict[str, Any],
    root: Path,
    allow_outside_root: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    train_resize: str | None = None,
    benchmark: str | None = None,
    expect_counts: ExpectCounts = "auto",
    strict_counts: bool = False,
) -> GroupDataset:
    """Confine the paths to ``root``, validate groups, check the counts of a known ``benchmark``
    (:mod:`spurmem.data.known_counts`), decode images through the cache, and assemble the dataset.

    ``train_resize`` (default: ``resize``) is the resize rule of the training split alone, e.g. the
    whole image (``stretch``) for random resized crops while val/test keep the centre crop."""
    if normalize not in NORMALIZATIONS:
        raise DataError(f"{name}: normalize must be one of {', '.join(NORMALIZATIONS)}; got {normalize!r}")
    if resize not in RESIZE_RULES:
        raise DataError(f"resize must be one of {', '.join(RESIZE_RULES)}; got {resize!r}")
    train_resize = resize if train_resize is None else train_resize
    if train_resize not in RESIZE_RULES:
        raise DataError(f"{name}: train_resize must be one of {', '.join(RESIZE_RULES)}; got {train_resize!r}")
    if not isinstance(allow_outside_root, bool):
        raise DataError(f"{name}: allow_outside_root must be true or false, got {allow_outside_root!r}")
    if not allow_outside_root:
        _check_confined(rec, root)
    _check_unique(rec)
    _check_groups(rec, class_names, attr_names)
    n_attrs = len(attr_names)
    if benchmark is not None:
        g = group_index(rec.y, rec.a, n_attrs)
        found = {name: np.bincount(g[rec.split == s], minlength=len(class_names) * n_attrs).tolist()
                 for s, name in enumerate(SPLITS)}
        group_names = [f"{c}/{a}" for c in class_names for a in attr_names]
        check_known_counts(benchmark, found, group_names, rec.described_in, expect_counts, strict_counts)
    order = np.argsort(rec.split, kind="stable")
    bounds = np.searchsorted(rec.split[order], np.arange(len(SPLITS) + 1))
    # One cache file for all splits, or two (train; val + test) when the training split has its own rule.
    parts = [(0, len(order), resize)] if train_resize == resize else [
        (0, bounds[1], train_resize), (bounds[1], len(order), resize)]
    decoded = [decoded_images(
        [rec.paths[i] for i in order[lo:hi]], size, resize=rule, cache_dir=cache_dir,
        origins=[rec.origins[i] for i in order[lo:hi]], progress=progress, max_pixels=max_pixels,
    ) for lo, hi, rule in parts]
    splits = {}
    for s, split_name in enumerate(SPLITS):
        rows = order[bounds[s] : bounds[s + 1]]
        part = 0 if len(parts) == 1 or s == 0 else 1
        lo = parts[part][0]
        splits[split_name] = SplitData(
            images=decoded[part].images[bounds[s] - lo : bounds[s + 1] - lo],  # a view of the memory map
            y=torch.from_numpy(rec.y[rows]), a=torch.from_numpy(rec.a[rows]),
            ids=[rec.ids[i] for i in rows], n_attrs=n_attrs,
        )
    if normalize == "imagenet":
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    else:
        train = splits["train"].images
        pick = np.unique(np.linspace(0, len(train) - 1, min(len(train), STATS_SAMPLE)).round().astype(int))
        mean, std = channel_stats(train[torch.from_numpy(pick)])
    caches = "; ".join(f"decoded cache {d.path} ({'reused' if d.hit else 'built'})" for d in decoded)
    extra = {} if benchmark is None else {"expect_counts": expect_counts, "strict_counts": strict_counts}
    if train_resize != resize:
        extra["train_resize"] = train_resize
    return GroupDataset(
        name=name, splits=splits, class_names=class_names, attr_names=attr_names, mean=mean, std=std,
        source=f"{source}; {caches}",
        params={**params, "size": size, "resize": resize, "normalize": normalize,
                "allow_outside_root": allow_outside_root, "max_pixels": max_pixels, **extra},
    )
