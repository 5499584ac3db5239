"""Writers of small image folders in the standard layouts (Waterbirds, CelebA, metadata CSV).

The images are generated (a tinted background for the attribute, a bright square or bar for the
class, non-square sizes so that resizing is exercised), so the tests, the loading benchmark and a
user trying the loaders need no download. Each writer returns the folder (or CSV) it wrote.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spurmem.data.schema import SPLITS

TINTS = np.array([[0.35, 0.7, 0.3], [0.25, 0.45, 0.9]])
CELEBA_ATTRS = ["5_o_Clock_Shadow", "Blond_Hair", "Eyeglasses", "Male", "Smiling"]


def example_image(y: int, a: int, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 H x W x 3: background tinted by ``a``, a square (y=0) or a vertical bar (y=1)."""
    img = TINTS[a] * (0.5 + 0.3 * rng.random((height, width, 1)))
    side = min(width, height) // 2
    top, left = (height - side) // 2, (width - side) // 2
    if y == 0:
        img[top : top + side, left : left + side] = 0.95
    else:
        img[top : top + side, left + side // 3 : left + 2 * side // 3] = 0.95
    return (img * 255).astype(np.uint8)


def group_rows(counts_per_split: dict[str, list[int]]) -> list[tuple[int, int, int]]:
    """(y, a, split index) for each example, from per-split counts of groups g = 2y + a."""
    rows = []
    for s, split in enumerate(SPLITS):
        for g, n in enumerate(counts_per_split[split]):
            rows += [(g // 2, g % 2, s)] * n
    return rows


def _save(img: np.ndarray, path: Path, quality: int = 90) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"quality": quality} if path.suffix == ".jpg" else {}
    Image.fromarray(img).save(path, **options)


def write_waterbirds_folder(
    root: Path, counts_per_split: dict[str, list[int]], width: int = 80, height: int = 64, seed: int = 0
) -> Path:
    """A Waterbirds-format folder: metadata.csv and JPEGs in per-species sub-folders."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    lines = ["img_id,img_filename,y,split,place,place_filename"]
    for i, (y, a, s) in enumerate(group_rows(counts_per_split), start=1):
        name = f"{1 + y:03d}.{'Water' if y else 'Land'}_bird/bird_{i:05d}.jpg"
        _save(example_image(y, a, width, height, rng), root / name)
        lines.append(f"{i},{name},{y},{s},{a},/{'water' if a else 'land'}/place_{i}.jpg")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    return root


def write_celeba_folder(
    root: Path, counts_per_split: dict[str, list[int]], form: str = "txt", seed: int = 0,
    target: str = "Blond_Hair", spurious: str = "Male",
) -> Path:
    """A CelebA-format folder with 178x218 JPEGs; lists in the original ``txt`` or the ``csv`` form.
    Groups are those of (target, spurious); the other attributes are random."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows = group_rows(counts_per_split)
    names, attr_rows, parts = [], [], []
    for i, (y, a, s) in enumerate(rows, start=1):
        name = f"{i:06d}.jpg"
        _save(example_image(y, a, 178, 218, rng), root / "img_align_celeba" / name)
        values = {k: int(rng.choice([-1, 1])) for k in CELEBA_ATTRS}
        values[target], values[spurious] = 2 * y - 1, 2 * a - 1
        names.append(name)
        attr_rows.append([values[k] for k in CELEBA_ATTRS])
        parts.append(s)
    if form == "txt":
        attr_text = [str(len(rows)), " ".join(CELEBA_ATTRS)]
        attr_text += [f"{n} " + " ".join(f"{v:2d}" for v in vals) for n, vals in zip(names, attr_rows)]
        (root / "list_attr_celeba.txt").write_text("\n".join(attr_text) + "\n")
        (root / "list_eval_partition.txt").write_text("".join(f"{n} {p}\n" for n, p in zip(names, parts)))
    elif form == "csv":
        attr_text = ["image_id," + ",".join(CELEBA_ATTRS)]
        attr_text += [f"{n}," + ",".join(map(str, vals)) for n, vals in zip(names, attr_rows)]
        (root / "list_attr_celeba.csv").write_text("\n".join(attr_text) + "\n")
        (root / "list_eval_partition.csv").write_text(
            "image_id,partition\n" + "".join(f"{n},{p}\n" for n, p in zip(names, parts))
        )
    else:
        raise ValueError(f"form must be 'txt' or 'csv', got {form!r}")
    return root


def write_metadata_csv(
    root: Path, counts_per_split: dict[str, list[int]], split_style: str = "names", seed: int = 0
) -> Path:
    """A metadata CSV (path, y, a, split) over PNG and JPEG files (alternating) in ``root/images``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    lines = ["path,y,a,split"]
    for i, (y, a, s) in enumerate(group_rows(counts_per_split)):
        name = f"images/img_{i:04d}.{'png' if i % 2 == 0 else 'jpg'}"
        _save(example_image(y, a, 40 + 8 * (i % 3), 40, rng), root / name)
        lines.append(f"{name},{y},{a},{SPLITS[s] if split_style == 'names' else s}")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    return root / "metadata.csv"
