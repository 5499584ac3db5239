"""The real-benchmark configs (Waterbirds, CelebA; ResNet-50, DeiT-S) on fixture folders, the published
preprocessing rules and the check of the published group counts (docs/real-benchmarks.md)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from spurmem.config import load_config
from spurmem.data import load_dataset
from spurmem.data import known_counts
from spurmem.data.folder_fixtures import write_celeba_folder, write_waterbirds_folder
from spurmem.data.image_cache import crop_box, decode_image
from spurmem.data.schema import DataError

COUNTS = {"train": [5, 2, 1, 4], "val": [1, 1, 1, 1], "test": [2, 1, 1, 2]}
TRAIN_CONFIGS = {  # packaged config -> the dataset it reads
    "erm_waterbirds_resnet50": "waterbirds",
    "finetune_waterbirds_resnet50": "waterbirds",
    "erm_waterbirds_deit_small": "waterbirds",
    "erm_celeba_resnet50": "celeba",
}
COMPARE_CONFIGS = {"compare_waterbirds_resnet50": "waterbirds"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    return {"waterbirds": write_waterbirds_folder(root / "waterbirds", COUNTS),
            "celeba": write_celeba_folder(root / "celeba", COUNTS)}


def _counts(ds):
    return {split: ds.group_counts(split).tolist() for split in COUNTS}


def test_crop_boxes_of_the_resize_rules():
    assert crop_box(400, 300, "stretch") == (0, 0, 400, 300)
    assert crop_box(400, 300, "center-crop") == (50, 0, 350, 300)
    assert crop_box(256, 128, "stretch-center-crop") == (16, 8, 240, 120)  # 87.5% of each side
    assert crop_box(300, 256, "resize-center-crop") == (38, 16, 262, 240)  # 224/256 of the shorter side


def test_stretch_center_crop_matches_the_published_eval_transform(tmp_path):
    """Resize((64, 64)) then CenterCrop(56) (torchvision, as in the GroupDRO/DFR code) = one decode at 56."""
    from torchvision.transforms import functional as TF

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (12, 15, 3), dtype=np.uint8)
    img = Image.fromarray(base).resize((150, 120), Image.BILINEAR)  # smooth content, not square
    path = tmp_path / "x.png"
    img.save(path)
    ours = decode_image(path, 56, "stretch-center-crop").astype(float)
    reference = np.asarray(TF.center_crop(TF.resize(img, [64, 64], antialias=True), [56, 56])).transpose(2, 0, 1)
    whole = decode_image(path, 56, "stretch").astype(float)  # the other rule differs visibly
    assert np.abs(ours - reference).mean() < 2.0 < np.abs(whole - reference).mean()


def test_train_split_with_its_own_resize_rule(folders, tmp_path):
    root = str(folders["waterbirds"])
    mixed = load_dataset("waterbirds", root=root, size=32, resize="center-crop", train_resize="stretch",
                         cache_dir=str(tmp_path))
    stretched = load_dataset("waterbirds", root=root, size=32, resize="stretch", cache_dir=str(tmp_path))
    cropped = load_dataset("waterbirds", root=root, size=32, resize="center-crop", cache_dir=str(tmp_path))
    assert torch.equal(mixed["train"].images, stretched["train"].images)
    assert not torch.equal(mixed["train"].images, cropped["train"].images)
    for split in ("val", "test"):
        assert torch.equal(mixed[split].images, cropped[split].images)
    assert mixed.params["train_resize"] == "stretch" and mixed.source.count("decoded cache") == 2
    with pytest.raises(DataError, match="train_resize must be one of"):
        load_dataset("waterbirds", root=root, size=32, train_resize="squash", cache_dir=str(tmp_path))


@pytest.mark.parametrize("name", sorted(TRAIN_CONFIGS))
def test_every_real_benchmark_train_config_loads_the_fixture(name, folders, tmp_path):
    from spurmem.train import TrainConfig
    from spurmem.train.run import build_dataset, build_run_model

    dataset = TRAIN_CONFIGS[name]
    config = load_config(TrainConfig, f"configs/{name}.yaml", [
        f"dataset_params.root={folders[dataset]}", f"dataset_params.cache_dir={tmp_path}"])
    assert config.dataset == dataset and config.dataset_params["size"] == 224
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fixture is far smaller than the benchmark: "auto" does not check it
        ds = build_dataset(config)
    assert _counts(ds) == COUNTS and ds.image_shape == (3, 224, 224)
    assert ds.mean == pytest.approx((0.485, 0.456, 0.406))  # ImageNet normalisation
    model = build_run_model(config, ds)
    assert model(torch.zeros(1, 3, 224, 224)).shape == (1, 2)
    if config.algorithm == "erm":
        assert config.weights and config.augment == "rrc-flip" and config.optimizer == "sgd"


@pytest.mark.parametrize("name", sorted(COMPARE_CONFIGS))
def test_the_real_benchmark_compare_config_loads_the_fixture(name, folders, tmp_path):
    from spurmem.train.compare import CompareConfig, check_protocol, hparams_for, plan_run

    dataset = COMPARE_CONFIGS[name]
    cmp = load_config(CompareConfig, f"configs/{name}.yaml", [
        f"dataset_params.root={folders[dataset]}", f"dataset_params.cache_dir={tmp_path}"])
    check_protocol(cmp)
    assert _counts(load_dataset(cmp.dataset, **cmp.dataset_params)) == COUNTS
    erm, jtt, framework = (hparams_for(cmp, a) for a in ("erm", "jtt", "spurmem"))
    assert erm.train["optimizer"] == jtt.train["optimizer"] == "sgd" and jtt.params["identification_epoch"] == 60
    assert framework.train["optimizer"] == "adam" and framework.train["lr"] == pytest.approx(2e-4)
    planned = {a: plan_run(cmp, a, 0, hparams_for(cmp, a), tmp_path / "erm").config for a in cmp.algorithms}
    assert {a for a, c in planned.items() if c.weights} == {"erm", "reweight", "groupdro", "jtt"}  # the rest start from ERM
    assert planned["jtt"].algorithm_params["identification_epoch"] == 60 and planned["spurmem"].epochs == 21


def test_the_count_check_names_the_file_and_the_differing_groups(folders, tmp_path):
    root = str(folders["waterbirds"])
    with pytest.warns(UserWarning) as caught:
        load_dataset("waterbirds", root=root, size=16, cache_dir=str(tmp_path), expect_counts=True)
    (message,) = [str(w.message) for w in caught]
    assert f"{root}/metadata.csv" in message and "published Waterbirds counts" in message
    assert "train g0 (landbird/land): 3498 expected, 5 found" in message
    assert "test g3 (waterbird/water): 642 expected, 2 found" in message
    with pytest.raises(DataError, match=r"metadata.csv: the group counts differ.*train g1 \(landbird/water\): 184"):
        load_dataset("waterbirds", root=root, size=16, cache_dir=str(tmp_path), expect_counts=True,
                     strict_counts=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset("waterbirds", root=root, size=16, cache_dir=str(tmp_path), expect_counts=False,
                     strict_counts=True)
    with pytest.raises(DataError, match="expect_counts must be auto, true or false"):
        load_dataset("waterbirds", root=root, size=16, cache_dir=str(tmp_path), expect_counts="yes")


def test_the_count_check_passes_when_the_expected_counts_are_the_fixtures(folders, tmp_path, monkeypatch):
    root = str(folders["waterbirds"])
    monkeypatch.setitem(known_counts.KNOWN_COUNTS, "waterbirds", {k: list(v) for k, v in COUNTS.items()})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load_dataset("waterbirds", root=root, size=16, cache_dir=str(tmp_path), expect_counts=True,
                          strict_counts=True)
    assert _counts(ds) == COUNTS
    # "auto" checks a folder of about the benchmark's size: one group off by one is reported
    near = {k: list(v) for k, v in COUNTS.items()}
    near["val"][2] += 1
    monkeypatch.setitem(known_counts.KNOWN_COUNTS, "waterbirds", near)
    with pytest.warns(UserWarning, match=r"val g2 \(waterbird/land\): 2 expected, 1 found"):
        load_dataset("waterbirds", root=root, size=16, cache_dir=str(tmp_path))


def test_the_celeba_count_check_is_for_blond_hair_x_male(folders, tmp_path):
    root = str(folders["celeba"])
    with pytest.raises(DataError, match=r"list_attr_celeba.txt.*CelebA \(Blond_Hair x Male\).*"
                                        r"train g3 \(Blond_Hair/Male\): 1387 expected, 4 found"):
        load_dataset("celeba", root=root, size=16, cache_dir=str(tmp_path), expect_counts=True, strict_counts=True)
    with warnings.catch_warnings():  # no published counts for another pair of attributes: nothing to check
        warnings.simplefilter("error")
        load_dataset("celeba", root=root, target="Smiling", spurious="Male", size=16, cache_dir=str(tmp_path),
                     expect_counts=True, strict_counts=True)


def test_the_published_counts_add_up_to_the_official_splits():
    wb, celeba = known_counts.KNOWN_COUNTS["waterbirds"], known_counts.KNOWN_COUNTS["celeba:Blond_Hair:Male"]
    assert [sum(wb[s]) for s in ("train", "val", "test")] == [4795, 1199, 5794]
    assert [sum(celeba[s]) for s in ("train", "val", "test")] == [162770, 19867, 19962]


def test_weights_path_with_a_tilde(tmp_path, monkeypatch):
    from spurmem.models import build_model, load_weights
    from spurmem.errors import UnreadableFileError

    monkeypatch.setenv("HOME", str(tmp_path))
    source = build_model("small-cnn", 10)
    torch.save(source.state_dict(), tmp_path / "w.pth")
    report = load_weights(build_model("small-cnn", 2), "~/w.pth")
    assert report.loaded and report.head_skipped
    with pytest.raises(UnreadableFileError, match="no such file; nothing is downloaded.*resnet50-0676ba61.pth"):
        load_weights(build_model("small-cnn", 2), "~/missing.pth")
