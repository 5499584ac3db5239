"""One epoch over a Waterbirds-format folder: the decoded cache vs decoding each image with PIL.

The baseline is what the published code does: a torch Dataset whose __getitem__ opens the JPEG with
PIL, resizes it and converts it to a normalised tensor, batched by a DataLoader. Ours: the
``waterbirds`` loader (decoded once into the memory-mapped cache) and ``iterate_batches``. Both
shuffle, use batches of 128 and produce the same normalised float batches; both run single-process
(num_workers=0, one torch thread by default) in this process, on the same folder generated into a
temporary directory. Each side builds its dataset once; our first epoch includes building the cache.

Usage: .venv/bin/python benchmarks/data_loading.py [--n-images 2048] [--size 64] [--source-px 64] [--epochs 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from spurmem.data import iterate_batches, load_dataset
from spurmem.data.folder_fixtures import write_waterbirds_folder
from spurmem.data.image_folder import IMAGENET_MEAN, IMAGENET_STD


class PILWaterbirds(torch.utils.data.Dataset):
    """The per-item decoding baseline: PIL open + resize + to tensor + normalise in __getitem__."""

    def __init__(self, root: Path, size: int):
        import csv

        with open(root / "metadata.csv", newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r["split"] == "0"]
        self.paths = [root / r["img_filename"] for r in rows]
        self.y = [int(r["y"]) for r in rows]
        self.size = size
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        with Image.open(self.paths[i]) as img:
            img = img.convert("RGB").resize((self.size, self.size), Image.BILINEAR)
            x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255)
        return (x - self.mean) / self.std, self.y[i]


def split_counts(n: int) -> dict[str, list[int]]:
    """Waterbirds-like proportions: 75% train (3498/184/56/1057 shape), 12.5% val and test balanced."""
    n_train = int(n * 0.75)
    shares = np.array([3498, 184, 56, 1057]) / 4795
    train = np.floor(shares * n_train).astype(int)
    train[0] += n_train - train.sum()
    held = (n - n_train) // 8
    rest = n - n_train - 4 * held  # the test split takes what is left
    return {"train": train.tolist(), "val": [held] * 4, "test": [rest - 3 * held] + [held] * 3}


def time_epochs(make_epoch, epochs: int) -> list[float]:
    """Seconds per epoch; each batch is consumed and dropped, as a training loop does."""
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        n = sum(len(x) for x in make_epoch())
        times.append(time.perf_counter() - start)
    assert n > 0
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=2048)
    parser.add_argument("--size", type=int, default=64, help="pixels the images are loaded at")
    parser.add_argument("--source-px", type=int, default=64,
                        help="pixels of the JPEG files written (real Waterbirds photos are about 300-500 px)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads for both sides (data loading is one process in both)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        root = write_waterbirds_folder(Path(tmp) / "waterbirds", split_counts(args.n_images),
                                       width=args.source_px, height=args.source_px)
        n_jpegs = len(list(root.rglob("*.jpg")))
        cache = Path(tmp) / "cache"

        state = {}

        def cached_epoch():
            if "ds" not in state:  # the first epoch builds the cache (decoding every image once)
                state["ds"] = load_dataset("waterbirds", root=str(root), size=args.size, cache_dir=str(cache),
                                           progress=False)
            ds = state["ds"]
            gen = torch.Generator().manual_seed(len(state))
            return (b.x for b in iterate_batches(ds["train"], args.batch_size, ds.mean, ds.std,
                                                 shuffle=True, generator=gen))

        baseline = PILWaterbirds(root, args.size)
        loader = torch.utils.data.DataLoader(baseline, batch_size=args.batch_size, shuffle=True, num_workers=0)

        def pil_epoch():
            return (x for x, _ in loader)

        ours = time_epochs(cached_epoch, args.epochs)
        pil = time_epochs(pil_epoch, args.epochs)
        start = time.perf_counter()
        load_dataset("waterbirds", root=str(root), size=args.size, cache_dir=str(cache), progress=False)
        reopen = time.perf_counter() - start

    print(f"{n_jpegs} JPEGs of {args.source_px}px loaded at {args.size}px, train split {len(baseline)} images, batch {args.batch_size}, "
          f"torch threads {torch.get_num_threads()}")
    print("epoch  decoded-cache(s)  PIL-per-item(s)")
    for e, (a, b) in enumerate(zip(ours, pil), start=1):
        print(f"{e:5d}  {a:16.3f}  {b:15.3f}")
    later_ours, later_pil = statistics.median(ours[1:]), statistics.median(pil[1:])
    print(f"first epoch (cache built in it): {ours[0]:.3f}s vs {pil[0]:.3f}s  ratio {pil[0] / ours[0]:.1f}x")
    print(f"epochs after the first (median): {later_ours:.3f}s vs {later_pil:.3f}s  ratio {later_pil / later_ours:.1f}x")
    print(f"re-opening the dataset from its cache in a new run (metadata, stat of every file, memory map): {reopen:.3f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
