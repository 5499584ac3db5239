"""timm vision transformers (never pretrained: nothing can be downloaded) at a configurable image size."""

from __future__ import annotations

from torch import nn

TIMM_NAMES = {
    "vit_tiny": "vit_tiny_patch16_224",
    "deit_tiny": "deit_tiny_patch16_224",
    "deit_small": "deit_small_patch16_224",
}


def default_patch_size(img_size: int) -> int:
    """16 px patches from 128 px up (224 -> 14x14 tokens); below, 8x8 tokens (32 px -> 4 px patches)."""
    return 16 if img_size >= 128 else max(2, img_size // 8)


def build_vit(arch: str, n_classes: int, in_channels: int = 3, img_size: int = 224,
              patch_size: int | None = None, **params) -> nn.Module:
    import timm

    if patch_size is None:
        patch_size = default_patch_size(img_size)
    if img_size % patch_size:
        raise ValueError(f"{arch}: img_size {img_size} is not a multiple of patch_size {patch_size}")
    model = timm.create_model(
        TIMM_NAMES[arch], pretrained=False, num_classes=n_classes, in_chans=in_channels,
        img_size=img_size, patch_size=patch_size, **params,
    )
    model.head_name = "head"
    return model
