"""`synthetic-shapes`: squares vs crosses on a tinted background, generated in code for unit tests."""

from __future__ import annotations

import numpy as np
import torch

from spurmem.data.schema import DataError, GroupDataset, SplitData
from spurmem.data.spurious import split_counts, channel_stats

TINTS = np.array([[0.85, 0.35, 0.25], [0.25, 0.45, 0.85]], dtype=np.float32)  # a=0 red, a=1 blue


def _draw(shape: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A binary mask of a square (0) or a cross (1) at a random position."""
    mask = np.zeros((size, size), dtype=bool)
    side = max(3, size // 2)
    r, c = rng.integers(0, size - side + 1, size=2)
    if shape == 0:
        mask[r : r + side, c : c + side] = True
    else:
        mid = side // 2
        mask[r : r + side, c + mid - 1 : c + mid + 1] = True
        mask[r + mid - 1 : r + mid + 1, c : c + side] = True
    return mask


def _render(y: np.ndarray, a: np.ndarray, size: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    out = np.empty((len(y), 3, size, size), dtype=np.uint8)
    for i, (yi, ai) in enumerate(zip(y, a)):
        bg = TINTS[ai][:, None, None] * (0.6 + 0.2 * rng.random((1, size, size), dtype=np.float32))
        img = bg + noise * rng.standard_normal((3, size, size), dtype=np.float32)
        img[:, _draw(int(yi), size, rng)] = 0.95
        out[i] = np.clip(img * 255.0, 0, 255).astype(np.uint8)
    return out


def load_synthetic_shapes(
    n_train: int = 400,
    n_val: int = 100,
    n_test: int = 100,
    rho: float = 0.9,
    size: int = 16,
    noise: float = 0.05,
    seed: int = 0,
) -> GroupDataset:
    """Square (y=0) vs cross (y=1); tint red (a=0) or blue (a=1) agrees with y at rate ``rho`` in train.

    Val and test are group-balanced. A pure function of its parameters.
    """
    if not 0.0 <= rho <= 1.0:
        raise DataError(f"synthetic-shapes: rho must be in [0, 1], got {rho}")
    if size < 6:
        raise DataError(f"synthetic-shapes: size must be >= 6 pixels, got {size}")
    rng = np.random.default_rng(seed)
    splits = {}
    for name, n, r in (("train", n_train, rho), ("val", n_val, 0.5), ("test", n_test, 0.5)):
        counts = split_counts(n, r)
        y = np.repeat([0, 0, 1, 1], counts)
        a = np.repeat([0, 1, 0, 1], counts)
        images = _render(y, a, size, noise, rng)
        splits[name] = SplitData(
            images=torch.from_numpy(images), y=torch.from_numpy(y), a=torch.from_numpy(a),
            ids=[f"{name}-{i}" for i in range(len(y))], n_attrs=2,
        )
    mean, std = channel_stats(splits["train"].images)
    return GroupDataset(
        name="synthetic-shapes", splits=splits, class_names=["square", "cross"], attr_names=["red", "blue"],
        mean=mean, std=std, source="generated in code",
        params=dict(n_train=n_train, n_val=n_val, n_test=n_test, rho=rho, size=size, noise=noise, seed=seed),
    )
