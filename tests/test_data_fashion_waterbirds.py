"""fashion-waterbirds: the recipe of docs/method.md §9, its counts and correlation, determinism, sources."""

import numpy as np
import pytest
import torch

from spurmem.data import DataError, load_dataset
from spurmem.data.fashion_mnist import debian_available
from spurmem.data.fashion_waterbirds import TINTS

SMALL = dict(n_train=400, n_val_per_group=20, n_test_per_group=20)


@pytest.fixture(scope="module")
def default():
    return load_dataset("fashion-waterbirds")


def test_default_counts_names_and_minorities(default):
    assert default.train_group_counts.tolist() == [2280, 120, 120, 2280]
    assert default.group_counts("val").tolist() == [250] * 4
    assert default.group_counts("test").tolist() == [250] * 4
    assert default.class_names == ["pullover", "coat"] and default.attr_names == ["land", "water"]
    assert default.minority_groups == [1, 2] and default.majority_groups == [0, 3]
    assert np.allclose(default.train_group_proportions[[1, 2]], 0.025)
    assert default.image_shape == (3, 32, 32)
    assert default["train"].images.dtype == torch.uint8


def test_train_correlation_matches_rho(default):
    train = default["train"]
    assert (train.y == train.a).float().mean().item() == pytest.approx(0.95, abs=0.005)
    for split in ("val", "test"):
        agree = (default[split].y == default[split].a).float().mean().item()
        assert agree == pytest.approx(0.5, abs=0.01)


def test_splits_are_disjoint_and_ids_stable(default):
    train, val, test = (set(default[s].ids) for s in ("train", "val", "test"))
    assert len(train) == 4800 and len(val) == 1000 and len(test) == 1000
    assert not train & val
    assert all(i.startswith("fmnist-train-") for i in train | val)
    assert all(i.startswith("fmnist-test-") for i in test)


def test_images_follow_the_recipe(default):
    x = default["train"].images.float() / 255.0
    grey = (x[:, 0] == x[:, 1]) & (x[:, 1] == x[:, 2])
    garment = grey & (x[:, 0] > 0.1)
    assert garment.float().mean() > 0.2  # garments cover a good part of the canvas
    # Background pixels carry the tint of the attribute: channel ratios equal the tint's ratios.
    a = default["train"].a
    for attr in (0, 1):
        px = x[a == attr][:200].permute(1, 0, 2, 3).reshape(3, -1)
        bg = px[:, (px[0] != px[1]) & (px.max(0).values > 0.2)]
        ratio = (bg[2] / bg[1]).median().item()
        assert ratio == pytest.approx(TINTS[attr][2] / TINTS[attr][1], rel=0.05)
    # Normalisation statistics are those of the training images.
    mean = default["train"].images.float().div(255).mean(dim=(0, 2, 3))
    assert np.allclose(default.mean, mean.numpy(), atol=1e-4)


def test_pure_function_of_parameters():
    a = load_dataset("fashion-waterbirds", seed=3, **SMALL)
    b = load_dataset("fashion-waterbirds", seed=3, **SMALL)
    c = load_dataset("fashion-waterbirds", seed=4, **SMALL)
    for s in ("train", "val", "test"):
        assert torch.equal(a[s].images, b[s].images) and a[s].ids == b[s].ids
    assert not torch.equal(a["train"].images, c["train"].images)


@pytest.mark.parametrize("rho", [0.5, 0.8, 1.0])
def test_rho_and_size_parameters(rho):
    ds = load_dataset("fashion-waterbirds", rho=rho, size=24, **SMALL)
    assert ds.image_shape == (3, 24, 24)
    assert (ds["train"].y == ds["train"].a).float().mean().item() == pytest.approx(rho, abs=0.01)


def test_variants_use_their_classes():
    hard = load_dataset("fashion-waterbirds", variant="hard", **SMALL)
    control = load_dataset("fashion-waterbirds", variant="control", **SMALL)
    assert hard.class_names == ["shirt", "T-shirt"]
    assert control.class_names == ["T-shirt", "trouser"]
    with pytest.raises(DataError, match="variant must be one of"):
        load_dataset("fashion-waterbirds", variant="easy")


def test_bundled_fallback_when_debian_files_are_missing(tmp_path):
    ds = load_dataset("fashion-waterbirds", fashion_mnist_dir=str(tmp_path), **SMALL)
    assert ds.source.startswith("bundled:")
    assert ds.train_group_counts.tolist() == [190, 10, 10, 190]
    with pytest.raises(DataError, match="IDX files not found"):
        load_dataset("fashion-waterbirds", source="debian", fashion_mnist_dir=str(tmp_path))
    with pytest.raises(DataError, match="source must be one of"):
        load_dataset("fashion-waterbirds", source="internet")


def test_bundled_subset_is_too_small_for_full_variants_and_says_so():
    with pytest.raises(DataError, match="needs 2900 images of class 6"):
        load_dataset("fashion-waterbirds", variant="hard", source="bundled")


@pytest.mark.skipif(not debian_available(), reason="Debian Fashion-MNIST not installed")
def test_bundled_and_debian_sources_give_identical_data(default):
    bundled = load_dataset("fashion-waterbirds", source="bundled")
    assert bundled.source.startswith("bundled:") and default.source.startswith("debian:")
    for s in ("train", "val", "test"):
        assert torch.equal(bundled[s].images, default[s].images)
        assert bundled[s].ids == default[s].ids and torch.equal(bundled[s].a, default[s].a)


def test_corrupt_idx_file_is_named(tmp_path):
    import gzip

    from spurmem.data.fashion_mnist import IDX_FILES

    truncated = b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") + b"\x00" * 8  # says 5 images, holds none
    for images, labels in IDX_FILES.values():
        (tmp_path / images).write_bytes(gzip.compress(truncated))
        (tmp_path / labels).write_bytes(gzip.compress(b"\x00\x00\x08\x01" + (0).to_bytes(4, "big")))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: header says 5 items"):
        load_dataset("fashion-waterbirds", source="debian", fashion_mnist_dir=str(tmp_path), **SMALL)
    (tmp_path / IDX_FILES["train"][0]).write_bytes(b"not gzip")
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: not a readable gzip file"):
        load_dataset("fashion-waterbirds", source="debian", fashion_mnist_dir=str(tmp_path), **SMALL)
    (tmp_path / IDX_FILES["train"][0]).write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 12))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: not an IDX file with magic number 2051"):
        load_dataset("fashion-waterbirds", source="debian", fashion_mnist_dir=str(tmp_path), **SMALL)


def test_bad_parameters():
    with pytest.raises(DataError, match="rho must be a number in"):
        load_dataset("fashion-waterbirds", rho=1.5)
    with pytest.raises(DataError, match=r"n_train must be an integer >= 2, got 0"):
        load_dataset("fashion-waterbirds", n_train=0)
    with pytest.raises(DataError, match=r"n_val_per_group must be an integer >= 1, got 2.5"):
        load_dataset("fashion-waterbirds", n_val_per_group=2.5)
    with pytest.raises(DataError, match=r"size must be an integer >= 8, got '32'"):
        load_dataset("fashion-waterbirds", size="32")


@pytest.mark.skipif(not debian_available(), reason="Debian Fashion-MNIST not installed")
def test_committed_bundle_matches_its_generating_script():
    import importlib.util
    from pathlib import Path

    from spurmem.data.fashion_mnist import BUNDLED_FILE, DEBIAN_DIR

    script = Path(__file__).parents[1] / "scripts" / "make_bundled_fmnist.py"
    spec = importlib.util.spec_from_file_location("make_bundled_fmnist", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = module.bundle_arrays(DEBIAN_DIR)
    with np.load(BUNDLED_FILE) as committed:
        assert sorted(committed.files) == sorted(expected)
        for key, arr in expected.items():
            assert np.array_equal(committed[key], arr), key
    assert BUNDLED_FILE.stat().st_size < 5 * 2**20


def test_environment_variable_points_to_the_idx_folder(tmp_path, monkeypatch):
    from spurmem.data.fashion_mnist import resolve_source

    monkeypatch.setenv("SPURMEM_FASHION_MNIST", str(tmp_path))
    assert resolve_source("auto") == "bundled"
    with pytest.raises(DataError, match=rf"IDX files not found in {tmp_path}"):
        resolve_source("debian")
