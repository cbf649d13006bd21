"""The score and confirm splits: disjoint, stratified, sized as asked or shared."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from xnorlab.common.errors import XnorlabError
from xnorlab.search.splits import draw_splits, split_sizes


def test_splits_are_disjoint_stratified_and_cover_the_rest() -> None:
    labels = np.repeat(np.arange(5), 40)  # sorted by class, as mnist5k is
    splits = draw_splits(labels, 50, 100, seed=3)
    score, confirm, rest = (set(a.tolist()) for a in (splits.score, splits.confirm, splits.rest))
    assert len(score) == 50 and len(confirm) == 100 and len(rest) == 50
    assert not score & confirm and not score & rest and not confirm & rest
    assert score | confirm | rest == set(range(200))
    assert Counter(labels[splits.score].tolist()) == {c: 10 for c in range(5)}
    assert Counter(labels[splits.confirm].tolist()) == {c: 20 for c in range(5)}
    assert splits.labelled


def test_the_seed_decides_the_items() -> None:
    labels = np.repeat(np.arange(2), 50)
    first, again = draw_splits(labels, 20, 20, 1), draw_splits(labels, 20, 20, 1)
    other = draw_splits(labels, 20, 20, 2)
    assert first.score.tolist() == again.score.tolist()
    assert first.score.tolist() != other.score.tolist()


def test_short_data_are_shared_in_the_asked_proportion() -> None:
    assert split_sizes(1000, 1000, 1000) == (500, 500)
    assert split_sizes(90, 20, 70) == (20, 70)
    assert split_sizes(10, 300, 100) == (8, 2)
    assert split_sizes(2, 1000, 1) == (1, 1)
    with pytest.raises(XnorlabError, match="at least 2 items"):
        split_sizes(1, 1, 1)


def test_unlabelled_items_are_one_stratum_and_mixed_labels_are_refused() -> None:
    splits = draw_splits(np.full(30, -1), 10, 10, 0)
    assert not splits.labelled and len(splits.score) == 10 and len(splits.confirm) == 10
    assert splits.info(np.full(30, -1), splits.score).per_class is None
    with pytest.raises(XnorlabError, match="some items have labels"):
        draw_splits(np.array([0, 1, -1, 0]), 1, 1, 0)
