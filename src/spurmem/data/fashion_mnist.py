"""Fashion-MNIST images from the Debian package (IDX files) or from the subset bundled in the repo.

Both sources yield the same :class:`FashionPool` per file ("train" or "test"): images, labels and
each image's index in the original IDX file. The bundled subset holds, for the classes used by the
``fashion-waterbirds`` variants, the *first* images of each class in file order, so a recipe that
draws its examples from the first k images of each class gets identical data from either source.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from spurmem.data.schema import DataError

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
BUNDLED_FILE = Path(__file__).with_name("bundled") / "fashion_mnist_subset.npz"
CLASS_NAMES = ["T-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
SOURCES = ("auto", "debian", "bundled")


@dataclass(frozen=True)
class FashionPool:
    """The images of one Fashion-MNIST file (or the bundled part of it)."""

    images: np.ndarray  # uint8 N x 28 x 28
    labels: np.ndarray  # int64 N
    file_index: np.ndarray  # int64 N: position in the original IDX file
    origin: str  # human-readable provenance

    def first_of_class(self, label: int, k: int, what: str) -> np.ndarray:
        """Rows of the first ``k`` images of class ``label`` in file order."""
        rows = np.flatnonzero(self.labels == label)
        if len(rows) < k:
            raise DataError(
                f"{self.origin}: {what} needs {k} images of class {label} ({CLASS_NAMES[label]}), "
                f"only {len(rows)} available" + (
                    "; the bundled subset is small: reduce n_train, n_val_per_group or n_test_per_group, "
                    "or install the Debian package dataset-fashion-mnist" if "bundled" in self.origin else ""
                )
            )
        order = np.argsort(self.file_index[rows], kind="stable")
        return rows[order[:k]]


def _read_idx(path: Path, magic: int, header: int, item_shape: tuple[int, ...]) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"Fashion-MNIST file missing: {path}")
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable gzip file ({exc})") from exc
    if len(raw) < header or int.from_bytes(raw[:4], "big") != magic:
        raise DataError(f"{path}: not an IDX file with magic number {magic}")
    n = int.from_bytes(raw[4:8], "big")
    expected = header + n * int(np.prod(item_shape, dtype=np.int64))
    if len(raw) != expected:
        raise DataError(f"{path}: header says {n} items ({expected} bytes), file has {len(raw)} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape((n, *item_shape))


@lru_cache(maxsize=4)
def _debian_pool(directory: str, which: str, stamp: tuple) -> FashionPool:
    del stamp  # part of the cache key only: a changed file is re-read
    image_file, label_file = (Path(directory) / f for f in IDX_FILES[which])
    images = _read_idx(image_file, 2051, 16, (28, 28))
    labels = _read_idx(label_file, 2049, 8, ()).astype(np.int64)
    if len(images) != len(labels):
        raise DataError(f"{image_file} has {len(images)} images but {label_file} has {len(labels)} labels")
    return FashionPool(images, labels, np.arange(len(labels)), f"Fashion-MNIST {which} file in {directory}")


@lru_cache(maxsize=2)
def _bundled_pools(path: str, stamp: tuple) -> dict[str, FashionPool]:
    del stamp
    if not Path(path).is_file():
        raise DataError(f"bundled Fashion-MNIST subset missing: {path} (regenerate with scripts/make_bundled_fmnist.py)")
    with np.load(path, allow_pickle=False) as z:
        return {
            which: FashionPool(
                z[f"{which}_images"], z[f"{which}_labels"].astype(np.int64), z[f"{which}_index"].astype(np.int64),
                f"bundled Fashion-MNIST subset ({which} file) {path}",
            )
            for which in IDX_FILES
        }


def _stamp(paths: list[Path]) -> tuple:
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) if p.exists() else (str(p),) for p in paths)


def debian_available(directory: Path | str = DEBIAN_DIR) -> bool:
    return all((Path(directory) / f).is_file() for files in IDX_FILES.values() for f in files)


def resolve_source(source: str, directory: Path | str | None = None) -> str:
    """``auto`` -> ``debian`` when the IDX files are installed, else ``bundled``."""
    if source not in SOURCES:
        raise DataError(f"Fashion-MNIST source must be one of {', '.join(SOURCES)}; got {source!r}")
    directory = Path(directory) if directory is not None else Path(os.environ.get("SPURMEM_FASHION_MNIST", DEBIAN_DIR))
    if source == "auto":
        return "debian" if debian_available(directory) else "bundled"
    if source == "debian" and not debian_available(directory):
        raise DataError(
            f"Fashion-MNIST IDX files not found in {directory} (expected "
            f"{', '.join(f for files in IDX_FILES.values() for f in files)}); on Debian as root: "
            "apt-get install -y dataset-fashion-mnist, or use source=bundled"
        )
    return source


def load_pools(source: str, directory: Path | str | None = None) -> tuple[str, dict[str, FashionPool]]:
    """The resolved source name and the {"train", "test"} pools."""
    directory = Path(directory) if directory is not None else Path(os.environ.get("SPURMEM_FASHION_MNIST", DEBIAN_DIR))
    resolved = resolve_source(source, directory)
    if resolved == "debian":
        pools = {
            which: _debian_pool(str(directory), which, _stamp([directory / f for f in IDX_FILES[which]]))
            for which in IDX_FILES
        }
        return f"debian:{directory}", pools
    return f"bundled:{BUNDLED_FILE.name}", _bundled_pools(str(BUNDLED_FILE), _stamp([BUNDLED_FILE]))
