"""Decoded image cache: image files decoded and resized once into a memory-mapped uint8 array.

The cache file is ``<cache_dir>/<key>.npy`` (``N x 3 x size x size``, uint8) where the key hashes
the image paths in order, each file's size and modification time, the output size and the resize
rule; any change to a source file gives a new key, so a stale cache is never read. Files are
written to a temporary name and renamed into place, so a killed build leaves no half-written cache.
Later loads memory-map the file: an epoch reads pixels from the page cache instead of decoding JPEGs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from spurmem.record import write_json_atomic
from spurmem.data.schema import DataError
from spurmem.progress import Progress

CACHE_VERSION = 1
DEFAULT_MAX_PIXELS = 40_000_000  # per image, read from the header before decoding (PIL's own limit: ~179 MP)
RESIZE_RULES = ("center-crop", "stretch", "stretch-center-crop", "resize-center-crop")
EVAL_CROP = 224 / 256  # the published eval transform: resize to 256, keep the centre 224
PROGRESS_MIN = 256  # show a progress bar when decoding at least this many images


def default_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir`` if given, else $SPURMEM_CACHE, else ~/.cache/spurmem."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    env = os.environ.get("SPURMEM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "spurmem"


@dataclass
class DecodedImages:
    """Images (uint8 N x 3 x H x W, backed by the memory-mapped cache file) and where they came from."""

    images: torch.Tensor
    path: Path
    hit: bool  # True when the cache file existed and was reused


def crop_box(width: int, height: int, resize: str) -> tuple[float, float, float, float]:
    """The region of a ``width`` x ``height`` image that ``resize`` scales to the output square.

    * ``center-crop``: the centre square (the shorter side scaled to the output size).
    * ``stretch``: the whole image (both sides scaled).
    * ``stretch-center-crop``: both sides scaled to size / EVAL_CROP (256 for 224), the centre
      size x size kept, i.e. the centre 87.5% of each side: the Waterbirds eval transform of the
      GroupDRO and DFR code (``Resize((256, 256))`` then ``CenterCrop(224)``).
    * ``resize-center-crop``: the shorter side scaled to size / EVAL_CROP, the centre square kept:
      torchvision's ImageNet eval transform (``Resize(256)`` then ``CenterCrop(224)``).
    """
    if resize == "stretch":
        return (0.0, 0.0, float(width), float(height))
    if resize == "stretch-center-crop":
        w, h = width * EVAL_CROP, height * EVAL_CROP
    else:
        side = min(width, height) * (EVAL_CROP if resize == "resize-center-crop" else 1.0)
        w = h = side
    left, top = (width - w) / 2, (height - h) / 2
    return (left, top, left + w, top + h)


def decode_image(path: Path, size: int, resize: str = "center-crop", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """One image file -> uint8 3 x size x size (RGB), the :func:`crop_box` of ``resize`` scaled to
    ``size`` (bilinear). An image of more than ``max_pixels`` pixels (by its header: PIL opens
    lazily) is a DataError, never decoded."""
    from PIL import Image

    with Image.open(path) as img:
        w, h = img.size
        if w * h > max_pixels:
            raise DataError(f"image {path} is {w} x {h} = {w * h} pixels, above the limit max_pixels={max_pixels} "
                            "(raise the dataset parameter max_pixels to allow it)")
        need = size if resize in ("center-crop", "stretch") else math.ceil(size / EVAL_CROP)  # the crop keeps >= size px
        img.draft("RGB", (need, need))  # JPEG: decode at a reduced scale when much larger than needed
        img = img.convert("RGB")
        img = img.resize((size, size), Image.BILINEAR, box=crop_box(*img.size, resize))
        return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


def cache_key(paths: Sequence[Path], size: int, resize: str, origins: Sequence[str] | None = None) -> str:
    """Hash of the source files' identity (path, size, mtime) and the resize parameters."""
    h = hashlib.sha256(json.dumps({"version": CACHE_VERSION, "size": size, "resize": resize}).encode())
    missing = []
    for i, p in enumerate(paths):
        try:
            st = os.stat(p)
        except OSError:
            missing.append(i)
            continue
        h.update(f"{os.fspath(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    if missing:
        shown = ", ".join(
            f"{paths[i]}" + (f" ({origins[i]})" if origins else "") for i in missing[:5]
        )
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DataError(f"{len(missing)} image file(s) missing: {shown}{more}")
    return h.hexdigest()[:32]


def _open_cached(path: Path, shape: tuple[int, ...]) -> torch.Tensor | None:
    try:
        arr = np.load(path, mmap_mode="c")  # copy-on-write: writable view, the file is never modified
    except (OSError, ValueError):
        return None
    if arr.shape != shape or arr.dtype != np.uint8:
        return None
    return torch.from_numpy(arr)


def _build(
    tmp: Path, paths: Sequence[Path], size: int, resize: str, origins: Sequence[str] | None,
    workers: int, progress: bool, description: str, max_pixels: int,
) -> None:
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), 3, size, size))

    def work(i: int) -> None:
        where = f" ({origins[i]})" if origins else ""
        try:
            out[i] = decode_image(paths[i], size, resize, max_pixels)
        except DataError as exc:
            raise DataError(f"{exc}{where}") from None
        except Exception as exc:  # PIL raises many types for undecodable files
            raise DataError(f"cannot decode image {paths[i]}{where}: {exc}") from exc

    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        results = pool.map(work, range(len(paths)))
        with Progress(description, len(paths), unit="images", enabled=progress and len(paths) >= PROGRESS_MIN,
                      cost=f"{len(paths):,} images decoded by {workers} threads, once (cached)") as bar:
            for _ in results:
                bar.advance(1)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # on an error, do not decode the rest
    out.flush()  # the memmap itself closes when this function returns


def decoded_images(
    paths: Sequence[Path],
    size: int,
    *,
    resize: str = "center-crop",
    cache_dir: str | os.PathLike | None = None,
    origins: Sequence[str] | None = None,
    workers: int | None = None,
    progress: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> DecodedImages:
    """Decode ``paths`` at ``size`` x ``size`` through the cache (built on a miss).

    ``origins`` (one per path, e.g. ``"metadata.csv line 12"``) is used in error messages: a missing
    or undecodable file, or one above ``max_pixels``, is a :class:`DataError` naming the file and
    where it was listed.
    """
    if resize not in RESIZE_RULES:
        raise DataError(f"resize must be one of {', '.join(RESIZE_RULES)}; got {resize!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise DataError(f"size must be a positive whole number of pixels, got {size!r}")
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 1:
        raise DataError(f"max_pixels must be a positive whole number, got {max_pixels!r}")
    paths = [Path(p) for p in paths]
    size = int(size)
    shape = (len(paths), 3, size, size)
    directory = default_cache_dir(cache_dir)
    key = cache_key(paths, size, resize, origins)
    final = directory / f"{key}.npy"
    images = _open_cached(final, shape) if final.exists() else None
    if images is not None:
        return DecodedImages(images, final, hit=True)

    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{key}.", suffix=".npy.tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _build(tmp, paths, size, resize, origins, workers or min(8, os.cpu_count() or 1), progress,
               f"decoding {len(paths)} images at {size}px", int(max_pixels))
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    info = {"n": len(paths), "size": size, "resize": resize, "first": os.fspath(paths[0]) if paths else None}
    write_json_atomic(directory / f"{key}.json", info)
    images = _open_cached(final, shape)
    if images is None:  # pragma: no cover - only if the file system lost the file we just wrote
        raise DataError(f"decoded image cache {final} could not be read back")
    return DecodedImages(images, final, hit=False)
