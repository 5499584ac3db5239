"""`colored-digits`: scikit-learn's 8x8 digits, label digit >= 5, red/blue colour as the spurious attribute."""

from __future__ import annotations

import numpy as np
import torch

from spurmem.data.schema import DataError, GroupDataset, SplitData
from spurmem.data.spurious import channel_stats

COLOURS = np.array([[1.0, 0.15, 0.1], [0.1, 0.3, 1.0]], dtype=np.float32)  # a=0 red, a=1 blue


def load_colored_digits(
    rho: float = 0.9, val_fraction: float = 0.2, test_fraction: float = 0.25, upscale: int = 2, seed: int = 0
) -> GroupDataset:
    """Digits coloured red (a=0) or blue (a=1); in train, colour agrees with y = (digit >= 5) at rate rho.

    Val and test take each colour with probability 1/2, independently of y. A pure function of its
    parameters; ``upscale`` repeats pixels (8 px -> 16 px by default) so small CNNs fit.
    """
    from sklearn.datasets import load_digits

    if not 0.0 <= rho <= 1.0:
        raise DataError(f"colored-digits: rho must be in [0, 1], got {rho}")
    digits = load_digits()
    gray = (digits.images / 16.0).astype(np.float32)
    labels = (digits.target >= 5).astype(np.int64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    n_test = int(round(test_fraction * len(order)))
    n_val = int(round(val_fraction * len(order)))
    parts = {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
    splits = {}
    for name, idx in parts.items():
        y = labels[idx]
        p_agree = rho if name == "train" else 0.5
        agree = rng.random(len(idx)) < p_agree
        a = np.where(agree, y, 1 - y)
        img = gray[idx][:, None] * COLOURS[a][:, :, None, None]
        if upscale > 1:
            img = img.repeat(upscale, axis=2).repeat(upscale, axis=3)
        images = torch.from_numpy(np.clip(img * 255.0, 0, 255).astype(np.uint8))
        splits[name] = SplitData(
            images=images, y=torch.from_numpy(y), a=torch.from_numpy(a),
            ids=[f"digits-{i}" for i in idx], n_attrs=2,
        )
    mean, std = channel_stats(splits["train"].images)
    return GroupDataset(
        name="colored-digits", splits=splits, class_names=["digit<5", "digit>=5"], attr_names=["red", "blue"],
        mean=mean, std=std, source="scikit-learn load_digits (bundled with scikit-learn)",
        params=dict(rho=rho, val_fraction=val_fraction, test_fraction=test_fraction, upscale=upscale, seed=seed),
    )
