"""``TrainConfig``: every setting of a training run. Defaults are the reference recipe of
docs/method.md §9 (fashion-waterbirds, small-cnn, Adam 1e-3 with cosine decay to 0, weight decay 0,
batch 128, 30 epochs, no augmentation, selection by validation WGA)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SELECTION_RULES = ("val_wga", "val_worst_class", "val_average", "last")

# Fields that do not change what is computed; left out of the config hash so a run can be resumed
# under another name, on another device or with another worker count, or keeping other checkpoints.
# (``compile`` and ``cudnn_benchmark`` change speed, not the function computed; ``tf32`` changes the
# rounding of CUDA matmuls and convolutions, so it is part of the hash like ``amp``.)
HASH_EXCLUDE = ("name", "device", "workers", "threads", "eval_batch_size", "checkpoints", "keep_every",
                "keep_epochs", "keep_rewind", "compile", "cudnn_benchmark")


class TrainConfig(BaseModel):
    """A training run. ``dataset_params``/``model_params``/``algorithm_params`` go to the registries."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)  # lr=inf is an error

    name: str = "erm-fashion-waterbirds"
    dataset: str = "fashion-waterbirds"
    dataset_params: dict[str, Any] = Field(default_factory=dict)
    model: str = "small-cnn"
    model_params: dict[str, Any] = Field(default_factory=dict)
    weights: str | None = None
    algorithm: str = "erm"
    algorithm_params: dict[str, Any] = Field(default_factory=dict)
    init_from: str | None = None
    init_epoch: Literal["selected", "last"] | int = "selected"

    epochs: int = Field(30, ge=0)
    batch_size: int = Field(128, ge=1)
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.9, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["cosine", "plateau", "constant"] = "cosine"
    plateau_factor: float = Field(0.5, gt=0, lt=1)
    plateau_patience: int = Field(1, ge=0)
    augment: str = "none"
    augment_params: dict[str, Any] = Field(default_factory=dict)

    seed: int = 0
    device: str = "auto"
    amp: bool = False
    channels_last: bool = False
    compile: bool = Field(False, description="torch.compile the model (nn.Module.compile, in place) before training")
    tf32: bool = Field(True, description="CUDA: TF32 matmuls and convolutions (float32 inputs, 10-bit mantissa "
                                         "products); no effect on the CPU")
    cudnn_benchmark: bool = Field(True, description="CUDA: let cuDNN time and pick the fastest convolution "
                                                    "algorithms for the (fixed) batch shape; no effect on the CPU")
    workers: int = Field(0, ge=0)
    threads: int = Field(0, ge=0, description="torch CPU threads (0: torch's default); 1 is fastest on a busy machine")
    sync_bn: bool = Field(False, description="under torchrun on CUDA: BatchNorm statistics over the global batch "
                                             "(SyncBatchNorm) instead of per process; ignored in one process")

    eval_splits: list[str] = Field(default_factory=lambda: ["train", "val", "test"])
    eval_every: int = Field(1, ge=1)
    eval_init: bool = True
    eval_batch_size: int = Field(128, ge=1)  # on a CPU, 128 evaluated 1.5x faster than 512 (cache)
    selection: Literal["val_wga", "val_worst_class", "val_average", "last"] = "val_wga"
    checkpoints: Literal["retain", "all"] = Field(
        "retain", description="retain: epoch 0, the selected, the last (and the resume fallback), every "
                              "keep_every-th, keep_epochs (spurmem.train.retention); all: every epoch")
    keep_every: int = Field(5, ge=0, description="checkpoints=retain: also keep every N-th epoch (0: none)")
    keep_epochs: list[int] = Field(default_factory=list, description="checkpoints=retain: epochs always kept")
    keep_rewind: int = Field(0, ge=0, description="checkpoints=retain: keep the epoch this many before the "
                                                  "selected one (a probe's rewind_epochs)")

    @model_validator(mode="before")
    @classmethod
    def _save_checkpoints(cls, data: Any) -> Any:
        """The old ``save_checkpoints`` key (in the config.yaml of runs made before retention, and in
        overrides merged into a dumped config): true sets ``checkpoints: all``, false sets
        ``checkpoints: retain`` with ``keep_every: 0``, over what the config says."""
        if not isinstance(data, dict) or "save_checkpoints" not in data:
            return data
        data = dict(data)
        old = data.pop("save_checkpoints")
        if not isinstance(old, bool):
            raise ValueError(f"save_checkpoints (now checkpoints: all|retain and keep_every) must be true or false, "
                             f"got {old!r}")
        return {**data, **({"checkpoints": "all"} if old else {"checkpoints": "retain", "keep_every": 0})}

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v not in ("auto", "cpu") and not v.startswith("cuda"):
            raise ValueError("device must be auto, cpu or cuda[:N]")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v or "/" in v or v.startswith("."):
            raise ValueError("name must be a non-empty file name (no '/'), it names runs/<name>")
        return v
