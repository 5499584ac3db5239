"""Regenerate src/spurmem/data/bundled/fashion_mnist_subset.npz from the Debian Fashion-MNIST files.

The subset holds the first images of each class in file order: for the default variant's classes
(pullover, coat) as many as the default recipe needs (train 2400 + val 500 from the training file,
test 500 from the test file); for the other variants' classes (T-shirt, trouser, shirt) half of
that, enough for n_train=2400 n_val_per_group=125 n_test_per_group=125. Pixels with value/255 <= 0.1 never reach a composed image (the
background shows there), so they are stored as 0, which roughly halves the compressed size; the
archive members are LZMA-compressed (numpy.load reads them transparently).

Usage: .venv/bin/python scripts/make_bundled_fmnist.py [--source-dir DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from spurmem.data.fashion_mnist import BUNDLED_FILE, DEBIAN_DIR, FashionPool, load_pools
from spurmem.data.fashion_waterbirds import INK_THRESHOLD, VARIANTS

FULL = {"train": 2400 + 2 * 250, "test": 2 * 250}
HALF = {"train": 1200 + 2 * 125, "test": 2 * 125}


def subset(pool: FashionPool, per_class: dict[int, int]) -> dict[str, np.ndarray]:
    rows = np.sort(np.concatenate([pool.first_of_class(c, k, "bundle") for c, k in per_class.items()]))
    images = pool.images[rows].copy()
    images[images <= int(INK_THRESHOLD * 255)] = 0
    return {"images": images, "labels": pool.labels[rows].astype(np.uint8), "index": pool.file_index[rows].astype(np.int32)}


def bundle_arrays(source_dir: str | Path) -> dict[str, np.ndarray]:
    """The arrays of the bundle, built from the Debian IDX files in ``source_dir``."""
    _, pools = load_pools("debian", source_dir)
    classes = sorted({c for pair in VARIANTS.values() for c in pair})
    arrays = {}
    for which in pools:
        per_class = {c: (FULL if c in VARIANTS["default"] else HALF)[which] for c in classes}
        for key, arr in subset(pools[which], per_class).items():
            arrays[f"{which}_{key}"] = arr
    return arrays


def write_npz_lzma(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as an .npz whose members are LZMA-compressed, atomically."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_LZMA) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            zf.writestr(f"{name}.npy", buf.getvalue())
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-dir", default=str(DEBIAN_DIR), help="folder with the Fashion-MNIST IDX .gz files")
    parser.add_argument("--out", default=str(BUNDLED_FILE), help="output .npz")
    args = parser.parse_args(argv)
    arrays = bundle_arrays(args.source_dir)
    classes = sorted(set(arrays["train_labels"].tolist()))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_npz_lzma(out, arrays)
    print(f"wrote {out}: classes {classes}, {len(arrays['train_labels'])} train-file and "
          f"{len(arrays['test_labels'])} test-file images, {out.stat().st_size / 2**20:.2f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
