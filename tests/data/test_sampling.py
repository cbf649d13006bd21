"""Samples are seeded, shuffled and class-stratified, whatever order the data comes in."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import ConcatDataset, Subset, TensorDataset

from xnorlab.data.datasets import load_dataset
from xnorlab.data.sampling import dataset_labels, stratified_indices, stratified_sample


def _sorted_by_class(per_class: int = 30, classes: int = 10) -> TensorDataset:
    labels = torch.arange(classes).repeat_interleave(per_class)
    return TensorDataset(torch.randn(len(labels), 1, 4, 4), labels)


def test_a_class_sorted_dataset_gives_a_balanced_sample() -> None:
    data = _sorted_by_class()
    sample, info = stratified_sample(data, 50, seed=3)
    labels = [int(data[i][1]) for i in sample.indices]
    assert Counter(labels) == dict.fromkeys(range(10), 5)
    assert info.count == 50 and info.per_class == dict.fromkeys(range(10), 5)
    assert labels != sorted(labels)  # shuffled, not class after class
    assert info.text() == "50 items, seed 3, 5 per class (10 classes)"


def test_same_seed_same_items_other_seed_other_items() -> None:
    data = _sorted_by_class()
    first, _ = stratified_sample(data, 40, seed=1)
    again, _ = stratified_sample(data, 40, seed=1)
    other, _ = stratified_sample(data, 40, seed=2)
    assert first.indices == again.indices and first.indices != other.indices


def test_uneven_classes_keep_their_shares_by_largest_remainder() -> None:
    labels = np.array([0] * 70 + [1] * 20 + [2] * 10)
    chosen = stratified_indices(labels, 15, seed=0)
    assert len(set(chosen.tolist())) == 15
    assert Counter(labels[chosen].tolist()) == {0: 10, 1: 3, 2: 2}  # 10.5, 3.0, 1.5 -> 15
    assert len(stratified_indices(labels, 1000)) == 100  # never more than there is


def test_labels_are_read_without_items_where_kept_apart(tmp_path: Path) -> None:
    data = _sorted_by_class(per_class=3, classes=4)
    nested = ConcatDataset([Subset(data, [0, 5, 11]), data])
    assert dataset_labels(nested).tolist() == [0, 1, 3, *[c for c in range(4) for _ in range(3)]]
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(5):
            Image.new("L", (8, 8), 40 * i).save(tmp_path / name / f"{i}.png")
    bundle = load_dataset(str(tmp_path))
    both = bundle.split("all")
    assert sorted(dataset_labels(both).tolist()) == [0] * 5 + [1] * 5


def test_mnist5k_val_sample_is_balanced() -> None:
    bundle = load_dataset("mnist5k")
    _, info = stratified_sample(bundle.val, 200)
    assert info.per_class == dict.fromkeys(range(10), 20)
