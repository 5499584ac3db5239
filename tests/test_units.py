import pytest
import torch
import torchvision
from torch import nn

from probe_models import MLP, TinyCNN
from spurmem.probes.units import (
    Unit, WeightSelection, candidate_layers, enumerate_units, head_name, output_site, selection_masks,
    unit_axis, units_by_layer, weight_slice,
)


@pytest.fixture(scope="module")
def resnet18():
    return torchvision.models.resnet18(num_classes=2)


@pytest.fixture(scope="module")
def vit():
    timm = pytest.importorskip("timm")
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8,
                             num_classes=2, depth=2)


def test_unit_id_round_trip():
    u = Unit("layer3.1.conv2", 17)
    assert u.id == "layer3.1.conv2:17" and Unit.parse(u.id) == u
    with pytest.raises(ValueError):
        Unit.parse("layer3.conv2")


def test_resnet18_candidates_exclude_downsample_and_head(resnet18):
    names = [l.name for l in candidate_layers(resnet18)]
    assert names[0] == "conv1" and "layer3.1.conv2" in names
    assert not any("downsample" in n for n in names) and "fc" not in names
    assert len(names) == 17  # stem + 16 block convs
    units = enumerate_units(resnet18)
    assert len(units) == 64 + 4 * 64 + 4 * 128 + 4 * 256 + 4 * 512
    assert Unit("layer3.1.conv2", 17) in units


def test_resnet18_downsample_by_option(resnet18):
    names = [l.name for l in candidate_layers(resnet18, include_downsample=True)]
    assert {"layer2.0.downsample.0", "layer3.0.downsample.0", "layer4.0.downsample.0"} <= set(names)
    assert len(names) == 20


def test_resnet18_output_sites(resnet18):
    assert output_site(resnet18, "conv1") == "bn1"
    assert output_site(resnet18, "layer3.1.conv2") == "layer3.1.bn2"
    assert output_site(resnet18, "layer2.0.downsample.0") == "layer2.0.downsample.1"
    assert output_site(resnet18, "fc") == "fc"


def test_small_cnn_units_and_sites():
    m = TinyCNN(widths=(4, 8))
    assert head_name(m) == "fc"
    layers = candidate_layers(m)
    assert [(l.name, l.kind, l.n_units) for l in layers] == [("stages.0.conv", "conv", 4), ("stages.1.conv", "conv", 8)]
    assert [u.id for u in enumerate_units(m)][:2] == ["stages.0.conv:0", "stages.0.conv:1"]
    assert output_site(m, "stages.1.conv") == "stages.1.bn"
    assert unit_axis(m.stages[1].bn) == 1


def test_output_site_ignores_a_norm_of_other_width():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(5))
    assert output_site(m, "0") == "0"


def test_mlp_units():
    m = MLP(d_in=6, hidden=(5, 4))
    assert [(l.name, l.kind, l.n_units) for l in candidate_layers(m)] == [("body.0", "linear", 5), ("body.2", "linear", 4)]
    assert output_site(m, "body.0") == "body.0"
    assert unit_axis(m.body[0]) == -1
    assert len(candidate_layers(m, include_head=True)) == 3


def test_vit_units_are_fc1_rows(vit):
    layers = candidate_layers(vit)
    assert [l.name for l in layers] == ["blocks.0.mlp.fc1", "blocks.1.mlp.fc1"]
    assert all(l.kind == "vit-mlp" and l.n_units == 4 * 192 for l in layers)
    w, b = weight_slice(vit, Unit("blocks.1.mlp.fc1", 5))
    assert w.shape == (192,) and b.shape == (1,)
    assert output_site(vit, "blocks.1.mlp.fc1") == "blocks.1.mlp.fc1"


def test_weight_slice_is_a_view_and_checks_range():
    m = TinyCNN(widths=(4, 8))
    w, b = weight_slice(m, Unit("stages.1.conv", 3))
    assert b is None and w.shape == (4, 3, 3)
    w.fill_(7.0)
    assert torch.all(m.stages[1].conv.weight[3] == 7.0)
    with pytest.raises(IndexError):
        weight_slice(m, Unit("stages.1.conv", 8))
    with pytest.raises(KeyError):
        weight_slice(m, Unit("stages.9.conv", 0))


def test_selection_masks_for_units_and_weights():
    m = MLP(d_in=6, hidden=(5, 4))
    masks = selection_masks(m, [Unit("body.2", 3), Unit("body.0", 1), Unit("body.0", 4)])
    assert list(units_by_layer([Unit("body.2", 3), Unit("body.0", 1)])) == ["body.2", "body.0"]
    wmask, bmask = masks["body.0"]
    assert wmask.sum() == 2 * 6 and bmask.tolist() == [False, True, False, False, True]
    assert masks["body.2"][0][3].all() and masks["body.2"][0].sum() == 5
    sel_mask = torch.zeros(4, 5, dtype=torch.bool)
    sel_mask[2, 1] = True
    sel = WeightSelection({"body.2": sel_mask})
    assert sel.count == 1 and sel.units() == [Unit("body.2", 2)]
    wmask, bmask = selection_masks(m, sel)["body.2"]
    assert bmask is None and wmask.sum() == 1
    with pytest.raises(ValueError):
        selection_masks(m, WeightSelection({"body.2": torch.zeros(3, 3, dtype=torch.bool)}))


def test_zoo_small_cnn_and_mlp():
    from spurmem.models import build_model

    cnn = build_model("small-cnn", n_classes=2)
    layers = candidate_layers(cnn)
    assert [l.name for l in layers] == [f"stages.{i}.conv" for i in range(4)]
    assert sum(l.n_units for l in layers) == 240  # docs/method.md §9: 240 conv channels
    assert head_name(cnn) == "fc" and output_site(cnn, "stages.3.conv") == "stages.3.bn"
    mlp = build_model("mlp", n_classes=2, img_size=8, hidden=(16, 8))
    assert [(l.name, l.n_units) for l in candidate_layers(mlp)] == [("layers.0", 16), ("layers.1", 8)]
    assert enumerate_units(mlp)[-1].id == "layers.1:7"
