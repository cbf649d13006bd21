"""A data set with its splits, and the one rule by which the lab splits labelled data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import Tensor
from torch.utils.data import ConcatDataset, Dataset

from xnorlab.common.errors import XnorlabError
from xnorlab.data.images import Preprocessing

SPLIT_SEED = 20160316  # arXiv 1603.05279's date: XNOR-Net


@dataclass
class DatasetBundle:
    """A data set with its splits and what its inputs look like."""

    name: str
    train: Dataset[tuple[Tensor, int]]
    val: Dataset[tuple[Tensor, int]]
    class_names: list[str]
    preprocessing: Preprocessing
    description: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one item."""
        return self.preprocessing.input_shape

    def split(self, name: str) -> Dataset[tuple[Tensor, int]]:
        """``train``, ``val`` or ``all`` (both)."""
        if name == "train":
            return self.train
        if name == "val":
            return self.val
        if name == "all":
            return ConcatDataset([self.train, self.val])
        raise XnorlabError(f"unknown split {name!r} (expected train, val or all)")


def stratified_split(
    labels: np.ndarray, train_fraction: float, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class seeded shuffle; ``round(train_fraction * n_c)`` of class ``c`` go to train."""
    rng = np.random.default_rng(seed)
    train_idx: list[np.ndarray] = []
    val_idx: list[np.ndarray] = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        cut = round(train_fraction * len(members))
        train_idx.append(members[:cut])
        val_idx.append(members[cut:])
    empty = np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate([empty, *train_idx])), np.sort(np.concatenate([empty, *val_idx]))
