"""The items a search scores candidates on and the items that confirm its choice.

Both are seeded, shuffled, class-stratified samples of the same data (``data.sampling``); the
confirm split is drawn from the items the score split left, so no item is in both and the
figure reported for the chosen point comes from items that chose nothing. Data without labels
(``is_unlabelled``) are split the same way, in one stratum.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from xnorlab.common.errors import XnorlabError
from xnorlab.data.sampling import SampleInfo, dataset_labels, is_unlabelled, stratified_indices


@dataclass(frozen=True)
class SearchSplits:
    """Indices into the data: ``score`` chooses, ``confirm`` reports, ``rest`` is neither
    (what a fine-tune may train on); ``labelled`` says whether top-1 has labels to count."""

    score: np.ndarray
    confirm: np.ndarray
    rest: np.ndarray
    labelled: bool
    seed: int

    def info(self, labels: np.ndarray, which: np.ndarray) -> SampleInfo:
        per_class = None
        if self.labelled:
            per_class = dict(sorted(Counter(int(v) for v in labels[which]).items()))
        return SampleInfo(count=len(which), seed=self.seed, per_class=per_class)


def split_sizes(total: int, score_items: int, confirm_items: int) -> tuple[int, int]:
    """``(score, confirm)`` sizes: as asked when both fit in ``total`` items, else ``total``
    shared in the asked proportion (each at least 1)."""
    if total < 2:
        raise XnorlabError(
            f"the search needs at least 2 items (a score and a confirm split), got {total}"
        )
    if score_items < 1 or confirm_items < 1:
        raise XnorlabError("the score and confirm splits need at least 1 item each")
    if score_items + confirm_items <= total:
        return score_items, confirm_items
    score = round(total * score_items / (score_items + confirm_items))
    score = min(max(score, 1), total - 1)
    return score, total - score


def draw_splits(
    labels: np.ndarray, score_items: int, confirm_items: int, seed: int
) -> SearchSplits:
    """Disjoint stratified samples: score from every item (``seed``), confirm from the rest
    (``seed + 1``); raises ``XnorlabError`` when only some items have labels."""
    unlabelled = is_unlabelled(labels)
    if not unlabelled and bool((labels < 0).any()):
        raise XnorlabError("some items have labels and some do not: give labels to all or none")
    score_count, confirm_count = split_sizes(len(labels), score_items, confirm_items)
    strata = np.zeros_like(labels) if unlabelled else labels
    score = stratified_indices(strata, score_count, seed)
    left = np.setdiff1d(np.arange(len(labels)), score)
    confirm = left[stratified_indices(strata[left], confirm_count, seed + 1)]
    rest = np.setdiff1d(left, confirm)
    return SearchSplits(score, confirm, rest, not unlabelled, seed)


def splits_of(
    dataset: Dataset[Any], score_items: int, confirm_items: int, seed: int
) -> tuple[SearchSplits, np.ndarray]:
    """``draw_splits`` on the labels of ``dataset``, and those labels."""
    labels = dataset_labels(dataset)
    return draw_splits(labels, score_items, confirm_items, seed), labels


def stack_items(dataset: Dataset[Any], indices: np.ndarray) -> tuple[Tensor, Tensor]:
    """The items at ``indices`` stacked as ``(inputs, labels)`` float32 / int64 tensors."""
    items = [dataset[int(i)] for i in indices]
    inputs = torch.stack([torch.as_tensor(x, dtype=torch.float32) for x, _ in items])
    return inputs, torch.tensor([int(y) for _, y in items], dtype=torch.long)
