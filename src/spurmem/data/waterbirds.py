"""`waterbirds`: the standard Waterbirds folder (docs/method.md §8).

``metadata.csv`` has columns img_id, img_filename, y, split, place (and place_filename): y = 1
waterbird, place = 1 water background, split 0/1/2 = train/val/test; img_filename is relative to
the folder. The usual training group counts are 3498 / 184 / 56 / 1057 (checked:
spurmem.data.known_counts).
"""

from __future__ import annotations

from spurmem.data.image_cache import DEFAULT_MAX_PIXELS
from spurmem.data.known_counts import ExpectCounts
from spurmem.data.image_folder import FolderRecords, build_folder_dataset, check_folder
from spurmem.data.schema import GroupDataset
from spurmem.data.tables import read_csv

CLASS_NAMES = ["landbird", "waterbird"]
ATTR_NAMES = ["land", "water"]


def load_waterbirds(
    root: str | None = None,
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
    """Waterbirds from ``root`` (the folder holding metadata.csv), images decoded once at ``size`` px
    into the cache (``cache_dir``, else $SPURMEM_CACHE, else ~/.cache/spurmem). Image paths must lie
    inside ``root`` unless ``allow_outside_root``; images above ``max_pixels`` are refused.
    ``train_resize`` is the training split's own resize rule (default ``resize``). The group counts
    are checked against the published ones (``expect_counts`` auto/true/false, ``strict_counts``:
    :mod:`spurmem.data.known_counts`)."""
    folder = check_folder(root, "waterbirds")
    table = read_csv(folder / "metadata.csv", ["img_filename", "y", "split", "place"], "Waterbirds metadata.csv")
    files = table.strings("img_filename")
    rec = FolderRecords(
        paths=[folder / f for f in files],
        ids=files,
        y=table.ints("y", (0, 1), "0 (landbird) or 1 (waterbird)"),
        a=table.ints("place", (0, 1), "0 (land) or 1 (water)"),
        split=table.ints("split", (0, 1, 2), "0, 1 or 2 (train, val, test)"),
        origins=[table.where(i) for i in range(len(table))],
        described_in=str(table.path),
    )
    return build_folder_dataset(
        "waterbirds", rec, CLASS_NAMES, ATTR_NAMES, size=size, resize=resize, normalize=normalize,
        cache_dir=cache_dir, progress=progress, source=f"Waterbirds folder {folder}", params={"root": str(folder)},
        root=folder, allow_outside_root=allow_outside_root, max_pixels=max_pixels,
        train_resize=train_resize, benchmark="waterbirds", expect_counts=expect_counts, strict_counts=strict_counts,
    )
