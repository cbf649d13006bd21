"""How the lab draws items: seeded, shuffled, and stratified by class when labels exist.

A data set sorted by class (mnist5k is) makes "the first N items" all one class; every sample
the lab shows a statistic or an accuracy on is drawn here instead, so it has the class mix of
the whole, and the same seed gives the same items.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset, Subset, TensorDataset

SAMPLE_SEED = 0
NO_LABEL = -1  # the label of an item given without one (never a class: training refuses it)


@runtime_checkable
class LabelledDataset(Protocol):
    """A data set of ours that knows every item's label without loading the item."""

    @property
    def labels(self) -> np.ndarray: ...


def dataset_labels(dataset: Dataset[Any]) -> np.ndarray:
    """The integer label of every item, read without decoding images where the data set
    keeps its labels apart (tensors, image-file lists, torchvision's ``targets``)."""
    fast = _labels_without_items(dataset)
    if fast is not None:
        return fast
    return np.asarray([int(item[1]) for item in dataset], dtype=np.int64)  # type: ignore[attr-defined]


def is_unlabelled(labels: np.ndarray) -> bool:
    """True when every item lacks a label (``NO_LABEL``, or any negative label), e.g. the
    calibration photos or ``xnorlab.show`` with ``X`` only: top-1 against labels cannot be
    counted on them."""
    return len(labels) > 0 and bool((labels < 0).all())


def _labels_without_items(dataset: Any) -> np.ndarray | None:
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) >= 2:
        return dataset.tensors[1].reshape(-1).long().numpy()
    if isinstance(dataset, Subset):
        base = _labels_without_items(dataset.dataset)
        return None if base is None else base[np.asarray(dataset.indices, dtype=np.int64)]
    if isinstance(dataset, ConcatDataset):
        parts = [_labels_without_items(part) for part in dataset.datasets]
        return None if any(p is None for p in parts) else np.concatenate(parts)  # type: ignore[arg-type]
    if isinstance(dataset, LabelledDataset):
        return np.asarray(dataset.labels, dtype=np.int64)
    targets = getattr(dataset, "targets", None)  # torchvision's data sets
    if targets is not None:
        return np.asarray(torch.as_tensor(targets), dtype=np.int64).reshape(-1)
    return None


def stratified_indices(labels: np.ndarray, count: int, seed: int = SAMPLE_SEED) -> np.ndarray:
    """``count`` indices with each class's share of ``labels`` (largest remainders), each
    class's members drawn in a seeded random order; the result is shuffled too."""
    n = len(labels)
    count = max(0, min(count, n))
    rng = np.random.default_rng(seed)
    classes, sizes = np.unique(labels, return_counts=True)
    exact = sizes * count / max(n, 1)
    quota = np.floor(exact).astype(np.int64)
    extra = count - int(quota.sum())
    order = np.lexsort((rng.random(len(classes)), -(exact - quota)))
    quota[order[:extra]] += 1
    picked = [
        rng.permutation(np.flatnonzero(labels == label))[:take]
        for label, take in zip(classes, quota, strict=True)
    ]
    chosen = np.concatenate([np.zeros(0, dtype=np.int64), *picked])
    return rng.permutation(chosen)


@dataclass(frozen=True)
class SampleInfo:
    """What a drawn sample holds: its size, seed and items per class (None: no labels)."""

    count: int
    seed: int
    per_class: dict[int, int] | None

    def text(self, class_names: Sequence[str] = ()) -> str:
        """``1,000 items, seed 0, 100 per class`` or the counts of each class."""
        head = f"{self.count:,} items, seed {self.seed}"
        if not self.per_class:
            return head + ", unlabelled"
        counts = set(self.per_class.values())
        if len(counts) == 1:
            return head + f", {counts.pop():,} per class ({len(self.per_class)} classes)"

        def name(label: int) -> str:
            return class_names[label] if 0 <= label < len(class_names) else str(label)

        parts = ", ".join(f"{name(k)}: {v}" for k, v in sorted(self.per_class.items()))
        return head + f" ({parts})"

    def to_json(self) -> dict[str, Any]:
        per_class = (
            None if self.per_class is None else {str(k): v for k, v in self.per_class.items()}
        )
        return {"count": self.count, "seed": self.seed, "per_class": per_class}


def stratified_sample(
    dataset: Dataset[Any], count: int | None, seed: int = SAMPLE_SEED
) -> tuple[Subset[Any], SampleInfo]:
    """A seeded, shuffled, class-stratified subset of ``count`` items (None: every item,
    still shuffled) and what it holds."""
    labels = dataset_labels(dataset)
    size = len(labels) if count is None else count
    indices = stratified_indices(labels, size, seed)
    per_class = dict(sorted(Counter(int(v) for v in labels[indices]).items()))
    info = SampleInfo(count=len(indices), seed=seed, per_class=per_class)
    return Subset(dataset, indices.tolist()), info
