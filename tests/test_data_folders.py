"""The image-folder loaders (waterbirds, celeba, metadata-csv) on folders the tests write, and the cache."""

import os
import time

import numpy as np
import pytest
import torch
from PIL import Image

from spurmem.data import load_dataset
from spurmem.data.folder_fixtures import (
    example_image, write_celeba_folder, write_metadata_csv, write_waterbirds_folder,
)

COUNTS = {"train": [5, 2, 1, 4], "val": [1, 1, 1, 1], "test": [2, 1, 1, 2]}


@pytest.fixture(scope="module")
def waterbirds_root(tmp_path_factory):
    return write_waterbirds_folder(tmp_path_factory.mktemp("wb"), COUNTS)


def _assert_counts(ds):
    for split, counts in COUNTS.items():
        assert ds.group_counts(split).tolist() == counts


def test_waterbirds_folder(waterbirds_root, tmp_path):
    ds = load_dataset("waterbirds", root=str(waterbirds_root), size=24, cache_dir=str(tmp_path))
    _assert_counts(ds)
    assert ds.class_names == ["landbird", "waterbird"] and ds.attr_names == ["land", "water"]
    assert ds.majority_groups == [0, 3] and ds.minority_groups == [1, 2]
    train = ds["train"]
    assert train.images.shape == (12, 3, 24, 24) and train.images.dtype == torch.uint8
    assert all(i.endswith(".jpg") and "/bird_" in i for i in train.ids)
    # Pixels reflect the files: a water example is bluer than a land example.
    x = train.images.float()
    blue_minus_green = (x[:, 2] - x[:, 1]).mean(dim=(1, 2))
    assert blue_minus_green[train.a == 1].min() > blue_minus_green[train.a == 0].max()
    # Splits are views of one memory-mapped cache file.
    assert "decoded cache" in ds.source and str(tmp_path) in ds.source


@pytest.mark.parametrize("form", ["txt", "csv"])
def test_celeba_folder(tmp_path, form):
    root = write_celeba_folder(tmp_path / "celeba", COUNTS, form=form)
    ds = load_dataset("celeba", root=str(root), size=16, cache_dir=str(tmp_path / "cache"))
    _assert_counts(ds)
    assert ds.group_names == ["not Blond_Hair/not Male", "not Blond_Hair/Male", "Blond_Hair/not Male", "Blond_Hair/Male"]
    assert ds.image_shape == (3, 16, 16)
    # Another pair of attributes by name: the fixture's other attributes are random, counts add up.
    other = load_dataset("celeba", root=str(root), target="Smiling", spurious="Eyeglasses", size=16,
                         cache_dir=str(tmp_path / "cache"))
    assert other.class_names == ["not Smiling", "Smiling"]
    assert sum(other.group_counts("train")) == sum(COUNTS["train"])
    assert "reused" in other.source  # same files and size: the cache is shared


@pytest.mark.parametrize("split_style", ["names", "numbers"])
def test_metadata_csv_png_and_jpeg(tmp_path, split_style):
    csv = write_metadata_csv(tmp_path / "mine", COUNTS, split_style=split_style)
    ds = load_dataset("metadata-csv", csv=str(csv), size=20, cache_dir=str(tmp_path / "cache"),
                      class_names="square,bar", attr_names=["green", "blue"])
    _assert_counts(ds)
    assert ds.group_names[1] == "square/blue"
    ids = ds["train"].ids + ds["val"].ids + ds["test"].ids
    assert {i.rsplit(".", 1)[1] for i in ids} == {"png", "jpg"}
    # The decoded PNG equals a direct PIL decode (lossless), checking the centre-crop resize rule.
    k = ds["train"].ids.index(next(i for i in ds["train"].ids if i.endswith(".png")))
    img = Image.open(csv.parent / ds["train"].ids[k]).convert("RGB")
    w, h = img.size
    side = min(w, h)
    box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
    expected = np.asarray(img.resize((20, 20), Image.BILINEAR, box=box)).transpose(2, 0, 1)
    assert np.array_equal(ds["train"].images[k].numpy(), expected)


def test_metadata_csv_default_names_and_train_normalisation(tmp_path):
    csv = write_metadata_csv(tmp_path / "mine", COUNTS)
    ds = load_dataset("metadata-csv", csv=str(csv), size=8, normalize="train", cache_dir=str(tmp_path / "c"))
    assert ds.class_names == ["class0", "class1"] and ds.attr_names == ["attr0", "attr1"]
    mean = ds["train"].images.float().div(255).mean(dim=(0, 2, 3))
    assert np.allclose(ds.mean, mean.numpy(), atol=1e-4)


# -- the decoded cache --------------------------------------------------------------------------

def _cache_files(d):
    return sorted(p.name for p in d.glob("*.npy"))


def test_cache_miss_then_hit(waterbirds_root, tmp_path):
    first = load_dataset("waterbirds", root=str(waterbirds_root), size=16, cache_dir=str(tmp_path))
    assert "(built)" in first.source and len(_cache_files(tmp_path)) == 1
    stamp = (tmp_path / _cache_files(tmp_path)[0]).stat().st_mtime_ns
    second = load_dataset("waterbirds", root=str(waterbirds_root), size=16, cache_dir=str(tmp_path))
    assert "(reused)" in second.source
    assert (tmp_path / _cache_files(tmp_path)[0]).stat().st_mtime_ns == stamp  # not rewritten
    for s in ("train", "val", "test"):
        assert torch.equal(first[s].images, second[s].images)
    assert not list(tmp_path.glob("*.tmp"))  # no temporary files left behind


def test_cache_is_keyed_by_size_and_env_var(waterbirds_root, tmp_path, monkeypatch):
    monkeypatch.setenv("SPURMEM_CACHE", str(tmp_path / "env"))
    load_dataset("waterbirds", root=str(waterbirds_root), size=16)
    load_dataset("waterbirds", root=str(waterbirds_root), size=12)
    assert len(_cache_files(tmp_path / "env")) == 2


def test_changed_source_invalidates_cache(tmp_path):
    root = write_waterbirds_folder(tmp_path / "wb", COUNTS)
    cache = tmp_path / "cache"
    before = load_dataset("waterbirds", root=str(root), size=16, cache_dir=str(cache))
    name = before["train"].ids[0]
    # Replace one image by a different one (a water-tinted bar) and move its mtime forward.
    path = root / name
    Image.fromarray(example_image(1, 1, 80, 64, np.random.default_rng(9))).save(path)
    later = time.time() + 5
    os.utime(path, (later, later))
    after = load_dataset("waterbirds", root=str(root), size=16, cache_dir=str(cache))
    assert "(built)" in after.source and len(_cache_files(cache)) == 2
    assert not torch.equal(before["train"].images[0], after["train"].images[0])
    assert torch.equal(before["train"].images[1:], after["train"].images[1:])


def test_cached_images_are_memory_mapped_views(waterbirds_root, tmp_path):
    ds = load_dataset("waterbirds", root=str(waterbirds_root), size=16, cache_dir=str(tmp_path))
    base = ds["train"].images.untyped_storage().data_ptr()
    assert ds["val"].images.untyped_storage().data_ptr() == base  # one storage shared by the splits
    ds["train"].images[0].zero_()  # copy-on-write: the file itself is not modified
    again = load_dataset("waterbirds", root=str(waterbirds_root), size=16, cache_dir=str(tmp_path))
    assert again["train"].images[0].sum() > 0
