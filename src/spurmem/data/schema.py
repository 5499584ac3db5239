"""The one metadata schema every dataset in spurmem follows (docs/method.md §2).

A :class:`GroupDataset` holds, per split, uint8 images on the CPU (``N x C x H x W``), the label
``y``, the spurious attribute ``a`` and a stable example id. The group is ``g = y * A + a``.
Majority and minority groups are derived from the *training* counts: within each class the group
with the most training examples is the majority group of that class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from spurmem.errors import SpurmemError

SPLITS = ("train", "val", "test")


class DataError(SpurmemError, ValueError):
    """Bad input data: the message names the file, line, key or example and what was expected."""


def group_index(y: torch.Tensor | np.ndarray | int, a, n_attrs: int):
    """Group id g = y * A + a."""
    return y * n_attrs + a


@dataclass
class SplitData:
    """One split: images (uint8, N x C x H x W, CPU), labels, attributes and stable ids."""

    images: torch.Tensor
    y: torch.Tensor
    a: torch.Tensor
    ids: list[str]
    n_attrs: int

    def __post_init__(self) -> None:
        n = len(self.y)
        if not (len(self.images) == n == len(self.a) == len(self.ids)):
            raise DataError(
                f"split arrays disagree in length: images={len(self.images)}, y={n}, "
                f"a={len(self.a)}, ids={len(self.ids)}"
            )
        self.y = torch.as_tensor(self.y, dtype=torch.long)
        self.a = torch.as_tensor(self.a, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def group(self) -> torch.Tensor:
        return group_index(self.y, self.a, self.n_attrs)

    def subset(self, index: torch.Tensor | np.ndarray | list[int]) -> "SplitData":
        """A new split holding the examples at ``index`` (images are indexed, not copied, when possible)."""
        idx = torch.as_tensor(np.asarray(index), dtype=torch.long)
        return SplitData(
            images=self.images[idx],
            y=self.y[idx],
            a=self.a[idx],
            ids=[self.ids[i] for i in idx.tolist()],
            n_attrs=self.n_attrs,
        )


@dataclass
class GroupDataset:
    """A group-labelled dataset: splits plus the names and statistics needed to report on groups."""

    name: str
    splits: dict[str, SplitData]
    class_names: list[str]
    attr_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if "train" not in self.splits:
            raise DataError(f"dataset {self.name!r} has no 'train' split")
        for split_name, split in self.splits.items():
            if len(split) == 0:
                raise DataError(f"dataset {self.name!r}: split {split_name!r} is empty")
            if split.y.min() < 0 or split.y.max() >= self.n_classes:
                raise DataError(
                    f"dataset {self.name!r}: split {split_name!r} has a label outside 0..{self.n_classes - 1}"
                )
            if split.a.min() < 0 or split.a.max() >= self.n_attrs:
                raise DataError(
                    f"dataset {self.name!r}: split {split_name!r} has an attribute outside 0..{self.n_attrs - 1}"
                )
        counts = self.train_group_counts
        for y in range(self.n_classes):
            if counts[y * self.n_attrs : (y + 1) * self.n_attrs].sum() == 0:
                raise DataError(f"dataset {self.name!r}: class {self.class_names[y]!r} has no training examples")

    # -- shape -----------------------------------------------------------------------------------
    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def n_attrs(self) -> int:
        return len(self.attr_names)

    @property
    def n_groups(self) -> int:
        return self.n_classes * self.n_attrs

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.splits["train"].images.shape[1:])  # type: ignore[return-value]

    def __getitem__(self, split: str) -> SplitData:
        if split not in self.splits:
            raise KeyError(f"dataset {self.name!r} has no split {split!r}; it has {sorted(self.splits)}")
        return self.splits[split]

    # -- groups ----------------------------------------------------------------------------------
    def group_of(self, y: int, a: int) -> int:
        return int(group_index(y, a, self.n_attrs))

    def group_y(self, g: int) -> int:
        return g // self.n_attrs

    def group_a(self, g: int) -> int:
        return g % self.n_attrs

    @property
    def group_names(self) -> list[str]:
        """Readable names such as ``coat/water`` (class/attribute)."""
        return [
            f"{self.class_names[self.group_y(g)]}/{self.attr_names[self.group_a(g)]}" for g in range(self.n_groups)
        ]

    def group_counts(self, split: str) -> np.ndarray:
        return np.bincount(self[split].group.numpy(), minlength=self.n_groups)

    @property
    def train_group_counts(self) -> np.ndarray:
        return self.group_counts("train")

    @property
    def train_group_proportions(self) -> np.ndarray:
        counts = self.train_group_counts.astype(float)
        return counts / counts.sum()

    def majority_group(self, y: int) -> int:
        """The group of class ``y`` with the most training examples."""
        counts = self.train_group_counts
        block = counts[y * self.n_attrs : (y + 1) * self.n_attrs]
        return y * self.n_attrs + int(np.argmax(block))

    @property
    def majority_groups(self) -> list[int]:
        return [self.majority_group(y) for y in range(self.n_classes)]

    @property
    def minority_groups(self) -> list[int]:
        major = set(self.majority_groups)
        return [g for g in range(self.n_groups) if g not in major and self.train_group_counts[g] > 0]

    def is_minority(self, g: int) -> bool:
        return g in self.minority_groups

    def same_class_majority(self, g: int) -> int:
        """The majority group of the class of group ``g``."""
        return self.majority_group(self.group_y(g))

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description: names, counts per split and group, and provenance."""
        return {
            "name": self.name,
            "source": self.source,
            "params": self.params,
            "class_names": self.class_names,
            "attr_names": self.attr_names,
            "group_names": self.group_names,
            "image_shape": list(self.image_shape),
            "majority_groups": self.majority_groups,
            "minority_groups": self.minority_groups,
            "counts": {s: self.group_counts(s).tolist() for s in self.splits},
        }
