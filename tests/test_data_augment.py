"""Tensor augmentations: shapes, determinism under a seeded generator, and what each one does."""

import pytest
import torch

from spurmem.data import DataError, iterate_batches
from spurmem.data.augment import AUGMENTATIONS, Flip, FlipCrop, ResizedCropFlip, build_augment


def _batch(n=16, c=3, h=12, w=12):
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", [k for k, v in AUGMENTATIONS.items() if v is not None])
def test_shape_dtype_and_seeded_determinism(name):
    aug = build_augment(name)
    x = _batch()
    a = aug(x, torch.Generator().manual_seed(5))
    b = aug(x, torch.Generator().manual_seed(5))
    c = aug(x, torch.Generator().manual_seed(6))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a, x)


def test_flip_flips_about_half_of_the_images():
    x = _batch(n=400)
    out = Flip()(x, torch.Generator().manual_seed(1))
    flipped = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, x)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, x)])
    assert bool((flipped | kept).all())
    assert 150 < int(flipped.sum()) < 250


def test_flip_crop_is_a_shifted_window_of_the_padded_image():
    x = _batch(n=64)
    out = FlipCrop(padding=2)(x, torch.Generator().manual_seed(2))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for o, p in zip(out, padded):
        windows = [p[:, r : r + 12, c : c + 12] for r in range(5) for c in range(5)]
        assert any(torch.equal(o, win) or torch.equal(o, win.flip(-1)) for win in windows)
    assert FlipCrop(padding=0)(x, torch.Generator().manual_seed(2)).shape == x.shape


def test_resized_crop_with_full_scale_is_identity_or_flip():
    x = _batch(n=32)
    out = ResizedCropFlip(scale=(1.0, 1.0), ratio=(1.0, 1.0))(x, torch.Generator().manual_seed(3))
    for o, i in zip(out, x):
        assert torch.allclose(o, i, atol=1e-5) or torch.allclose(o, i.flip(-1), atol=1e-5)


def test_resized_crop_zooms_in():
    # A horizontal ramp: a crop of a fraction of the width has a smaller range of values.
    ramp = torch.linspace(0, 1, 32).expand(8, 3, 32, 32).contiguous()
    out = ResizedCropFlip(scale=(0.25, 0.25), ratio=(1.0, 1.0))(ramp, torch.Generator().manual_seed(4))
    spans = out[:, 0, 16].max(dim=-1).values - out[:, 0, 16].min(dim=-1).values
    assert torch.allclose(spans, torch.full_like(spans, 0.5), atol=0.05)


def test_registry_lookup_and_errors():
    assert build_augment("none") is None
    assert build_augment("flip-crop", padding=2) == FlipCrop(padding=2)
    assert build_augment("rrc-flip", scale=[0.5, 1.0]).scale == (0.5, 1.0)
    with pytest.raises(DataError, match=r"unknown augmentation 'rrc_flip' \(did you mean 'rrc-flip'\?\)"):
        build_augment("rrc_flip")
    with pytest.raises(DataError, match=r"augmentation 'flip-crop': .*unexpected keyword argument 'pad'"):
        build_augment("flip-crop", pad=3)


def test_used_by_iterate_batches_reproducibly(shapes):
    aug = build_augment("rrc-flip")
    kw = dict(batch_size=32, mean=shapes.mean, std=shapes.std, shuffle=True, augment=aug)
    first = [b.x for b in iterate_batches(shapes["train"], generator=torch.Generator().manual_seed(0), **kw)]
    again = [b.x for b in iterate_batches(shapes["train"], generator=torch.Generator().manual_seed(0), **kw)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert first[0].shape == (32, *shapes.image_shape)
