"""`fashion-waterbirds`: Fashion-MNIST garments on tinted CC0 textures (the built-in benchmark).

The recipe of docs/method.md §9: a 32x32 random crop of a scikit-image texture (``grass`` for
land, ``gravel`` or ``brick`` 50/50 for water) times a tint is the background; the 28x28 garment is
placed at a random offset of 0-4 px and its pixels with value/255 > 0.1 replace the background in
all three channels with their grey level. The attribute is the background (a=0 land, a=1 water),
and in train it agrees with the class at rate ``rho``; val and test are group-balanced.

Examples of class c are drawn from the first images of c in file order (train+val from the
Fashion-MNIST training file, test from its test file), so the Debian files and the bundled subset
give identical datasets. The seed decides which of them go to train or val, their backgrounds,
crops and offsets. A pure function of its parameters.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from spurmem.data.fashion_mnist import CLASS_NAMES, FashionPool, load_pools
from spurmem.data.schema import DataError, GroupDataset, SplitData, group_index
from spurmem.data.spurious import channel_stats, split_counts

VARIANTS = {"default": (2, 4), "hard": (6, 0), "control": (0, 1)}  # (class of y=0, class of y=1)
TINTS = np.array([[0.25, 0.80, 0.25], [0.20, 0.45, 0.90]], dtype=np.float32)  # a=0 land, a=1 water
CANVAS = 32
GARMENT = 28
INK_THRESHOLD = 0.1  # garment pixels with value/255 above this replace the background


@lru_cache(maxsize=1)
def textures() -> np.ndarray:
    """grass, gravel, brick as float32 grayscale in [0, 1], shape 3 x H x W."""
    from skimage import data

    out = []
    for load in (data.grass, data.gravel, data.brick):
        img = np.asarray(load())
        if img.ndim == 3:  # defensive: some scikit-image versions may ship RGB
            img = img[..., :3].mean(axis=2)
        out.append(img.astype(np.float32) / 255.0)
    return np.stack(out)


def compose(garments: np.ndarray, a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Render uint8 N x 3 x 32 x 32 images from uint8 N x 28 x 28 garments and attributes ``a``."""
    n = len(garments)
    tex = textures()
    water_texture = np.where(rng.random(n) < 0.5, 1, 2)
    texture = np.where(a == 0, 0, water_texture)
    top = rng.integers(0, tex.shape[1] - CANVAS + 1, size=n)
    left = rng.integers(0, tex.shape[2] - CANVAS + 1, size=n)
    span = np.arange(CANVAS)
    crops = tex[texture[:, None, None], (top[:, None] + span)[:, :, None], (left[:, None] + span)[:, None, :]]
    background = crops[:, None] * TINTS[a][:, :, None, None]

    max_shift = CANVAS - GARMENT
    dy = rng.integers(0, max_shift + 1, size=n)
    dx = rng.integers(0, max_shift + 1, size=n)
    inner = np.arange(GARMENT)
    canvas = np.zeros((n, CANVAS, CANVAS), dtype=np.float32)
    canvas[np.arange(n)[:, None, None], (dy[:, None] + inner)[:, :, None], (dx[:, None] + inner)[:, None, :]] = (
        garments.astype(np.float32) / 255.0
    )
    image = np.where((canvas > INK_THRESHOLD)[:, None], canvas[:, None], background)
    return np.rint(image * 255.0).astype(np.uint8)


def _resize(images: np.ndarray, size: int) -> torch.Tensor:
    x = torch.from_numpy(images)
    if size == CANVAS:
        return x
    y = torch.nn.functional.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return y.round_().clamp_(0, 255).to(torch.uint8)


def _make_split(
    pool: FashionPool, prefix: str, rows: list[np.ndarray], a_per_class: list[np.ndarray],
    size: int, rng: np.random.Generator,
) -> SplitData:
    idx = np.concatenate(rows)
    y = np.concatenate([np.full(len(r), cls) for cls, r in enumerate(rows)])
    a = np.concatenate(a_per_class)
    images = _resize(compose(pool.images[idx], a, rng), size)
    ids = [f"{prefix}-{i}" for i in pool.file_index[idx].tolist()]
    return SplitData(images=images, y=torch.from_numpy(y), a=torch.from_numpy(a), ids=ids, n_attrs=2)


def _attributes(rng: np.random.Generator, n_agree: int, n_disagree: int, cls: int) -> np.ndarray:
    """Shuffled attributes for one class: ``n_agree`` equal to ``cls`` (the majority background)."""
    a = np.concatenate([np.full(n_agree, cls), np.full(n_disagree, 1 - cls)])
    return rng.permutation(a)


def _whole_number(key: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise DataError(f"fashion-waterbirds: {key} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def load_fashion_waterbirds(
    variant: str = "default",
    rho: float = 0.95,
    size: int = 32,
    n_train: int = 4800,
    n_val_per_group: int = 250,
    n_test_per_group: int = 250,
    seed: int = 0,
    source: str = "auto",
    fashion_mnist_dir: str | None = None,
) -> GroupDataset:
    """Build fashion-waterbirds. ``variant``: default (pullover vs coat), hard (shirt vs T-shirt),
    control (T-shirt vs trouser). ``source``: auto (Debian files if installed, else bundled),
    debian or bundled. ``fashion_mnist_dir`` overrides /usr/share/datasets/fashion-mnist (also the
    environment variable SPURMEM_FASHION_MNIST)."""
    if variant not in VARIANTS:
        raise DataError(f"fashion-waterbirds: variant must be one of {', '.join(VARIANTS)}; got {variant!r}")
    if not isinstance(rho, (int, float)) or not 0.0 <= float(rho) <= 1.0:
        raise DataError(f"fashion-waterbirds: rho must be a number in [0, 1], got {rho!r}")
    size = _whole_number("size", size, 8)
    n_train = _whole_number("n_train", n_train, 2)
    n_val_per_group = _whole_number("n_val_per_group", n_val_per_group, 1)
    n_test_per_group = _whole_number("n_test_per_group", n_test_per_group, 1)
    origin, pools = load_pools(source, fashion_mnist_dir)
    classes = VARIANTS[variant]
    counts = split_counts(n_train, float(rho))  # (y0,a0), (y0,a1), (y1,a0), (y1,a1)
    rng = np.random.default_rng(seed)

    train_rows, val_rows, train_a, val_a, test_rows, test_a = [], [], [], [], [], []
    for y, cls in enumerate(classes):
        n_cls = counts[2 * y] + counts[2 * y + 1]
        pool_rows = pools["train"].first_of_class(cls, n_cls + 2 * n_val_per_group, "train + val")
        pool_rows = rng.permutation(pool_rows)
        train_rows.append(pool_rows[:n_cls])
        val_rows.append(pool_rows[n_cls:])
        agree = counts[group_index(y, y, 2)]  # the group whose background matches the class
        train_a.append(_attributes(rng, agree, n_cls - agree, y))
        val_a.append(_attributes(rng, n_val_per_group, n_val_per_group, y))
        test_rows.append(pools["test"].first_of_class(cls, 2 * n_test_per_group, "test"))
        test_a.append(_attributes(rng, n_test_per_group, n_test_per_group, y))

    splits = {
        "train": _make_split(pools["train"], "fmnist-train", train_rows, train_a, size, rng),
        "val": _make_split(pools["train"], "fmnist-train", val_rows, val_a, size, rng),
        "test": _make_split(pools["test"], "fmnist-test", test_rows, test_a, size, rng),
    }
    mean, std = channel_stats(splits["train"].images)
    return GroupDataset(
        name="fashion-waterbirds", splits=splits,
        class_names=[CLASS_NAMES[c] for c in classes], attr_names=["land", "water"],
        mean=mean, std=std, source=f"{origin}; textures scikit-image grass/gravel/brick (CC0)",
        params=dict(variant=variant, rho=rho, size=size, n_train=n_train, n_val_per_group=n_val_per_group,
                    n_test_per_group=n_test_per_group, seed=seed, source=source),
    )
