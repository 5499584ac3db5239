"""Device selection: ``auto`` picks CUDA when present, else the CPU. Nothing else assumes CUDA; asking for
CUDA where there is none is a :class:`~spurmem.config.ConfigError` (one line on the command line)."""

from __future__ import annotations

import torch

from spurmem.config import ConfigError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device={device!r} was asked for but CUDA is not available on this machine; "
                              "use device=auto or device=cpu")
        index = device.partition(":")[2]
        if index.isdigit() and int(index) >= torch.cuda.device_count():
            raise ConfigError(f"device={device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(device)
