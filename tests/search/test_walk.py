"""The search's budget logic on a model whose sensitivities are known by construction
(``search_support``): layer ``0`` costs exactly 50 points, layer ``1`` nothing."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch
from search_support import known_items, known_model

from xnorlab.binary.modes import Mode
from xnorlab.binary.surgery import current_modes, wrapped_layers
from xnorlab.common.errors import XnorlabError
from xnorlab.common.tasks import Cancelled
from xnorlab.data.sampling import NO_LABEL
from xnorlab.measure.front import Agreement, Objective, SearchResult, within_budget
from xnorlab.measure.intervals import Accuracy
from xnorlab.search.splits import draw_splits
from xnorlab.search.walk import SearchOptions, rank_layers, search_modes

F, B, X = Mode.FLOAT, Mode.BWN, Mode.XNOR


def _hits(result: SearchResult, modes: dict[str, Mode]) -> Accuracy:
    for point in (*result.front, result.float_point):
        if dict(point.modes) == modes:
            return point.accuracy
    raise AssertionError(f"{modes} not on the front")


def test_within_budget_counts_items_on_the_same_split() -> None:
    floats = Accuracy(990, 1000)
    assert within_budget(Accuracy(980, 1000), floats, 1.0)
    assert not within_budget(Accuracy(979, 1000), floats, 1.0)
    assert within_budget(Accuracy(990, 1000), floats, 0.0)
    assert not within_budget(Accuracy(989, 1000), floats, 0.0)


def test_ranking_puts_cheap_layers_first_equal_costs_by_gain_and_gainless_layers_last() -> None:
    costs = {"a": 0.10, "b": 0.01, "c": 0.0, "d": 0.0, "e": 0.0}
    gains = {"a": 9.0, "b": 0.5, "c": 0.0, "d": 2.0, "e": 3.0}
    assert rank_layers(costs, gains) == ["e", "d", "b", "a", "c"]


def test_a_one_point_budget_binarizes_only_the_free_layer_and_confirms_it() -> None:
    model = known_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    configs = {name: layer.config for name, layer in wrapped_layers(model).items()}
    options = SearchOptions(1.0, Objective.MEMORY, score_items=60, confirm_items=80, seed=4)
    result = search_modes(model, known_items(100), options)

    assert result.metric is Agreement.TOP1
    assert result.float_point.accuracy == Accuracy(60, 60)
    assert result.chosen is not None
    assert dict(result.chosen.modes) == {"0": F, "1": B}
    assert result.chosen.accuracy == Accuracy(60, 60)
    # the figures reported for the choice come from the confirm split, which chose nothing
    assert result.confirm_accuracy == Accuracy(80, 80) and result.confirm_float == Accuracy(80, 80)
    assert result.score_sample.count == 60 and result.confirm_sample.count == 80
    assert result.score_sample.per_class == {0: 30, 1: 30}
    # layer 0 binarized was measured (50 %, out of budget) and is on the front: it is smaller
    assert _hits(result, {"0": B, "1": B}) == Accuracy(30, 60)
    assert result.evaluated >= 3
    # the caller's model is untouched: same weights, same configs, still float
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert {n: layer.config for n, layer in wrapped_layers(model).items()} == configs
    assert set(current_modes(model).values()) == {F}


def test_a_wide_budget_takes_the_costly_layer_too() -> None:
    options = SearchOptions(60.0, Objective.MEMORY, score_items=60, confirm_items=60)
    result = search_modes(known_model(), known_items(100), options)
    assert result.chosen is not None and dict(result.chosen.modes) == {"0": B, "1": B}
    assert result.chosen.accuracy == Accuracy(30, 60)
    assert result.confirm_accuracy == Accuracy(30, 60)  # class 0 only, on the confirm items


def test_without_labels_the_budget_is_on_agreement_with_float() -> None:
    options = SearchOptions(1.0, Objective.MEMORY, score_items=50, confirm_items=50)
    result = search_modes(known_model(), known_items(50, labelled=False), options)
    assert result.metric is Agreement.FLOAT_AGREEMENT
    assert result.float_point.accuracy == Accuracy(50, 50)  # float agrees with itself
    assert result.score_sample.per_class is None
    assert result.chosen is not None and dict(result.chosen.modes) == {"0": F, "1": B}
    assert result.confirm_accuracy == Accuracy(50, 50)
    # layer 0 binarized predicts class 0 everywhere: it agrees on the class-0 items only (item i
    # is of class i % 2; unlabelled items are drawn in one stratum, so not half and half)
    score = draw_splits(np.full(100, NO_LABEL), 50, 50, options.seed).score
    assert _hits(result, {"0": B, "1": B}) == Accuracy(int((score % 2 == 0).sum()), 50)


def test_fine_tuning_without_labels_is_refused_before_any_work() -> None:
    options = SearchOptions(1.0, finetune_epochs=1, score_items=10, confirm_items=10)
    with pytest.raises(XnorlabError, match="needs labels"):
        search_modes(known_model(), known_items(10, labelled=False), options)


@pytest.mark.parametrize("budget", [-1.0, float("nan"), float("inf")])
def test_a_budget_that_is_no_number_of_points_is_refused(budget: float) -> None:
    with pytest.raises(XnorlabError, match="budget"):
        search_modes(known_model(), known_items(10), SearchOptions(budget))


def test_cancel_stops_the_search_and_leaves_the_model_alone() -> None:
    model = known_model()
    saved = copy.deepcopy(model.state_dict())
    calls = []

    def should_cancel() -> bool:
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(Cancelled):
        search_modes(model, known_items(20), SearchOptions(1.0), should_cancel=should_cancel)
    assert len(calls) == 4  # it stopped at the first request
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    assert set(current_modes(model).values()) == {F}


def test_progress_rises_to_one() -> None:
    seen: list[float] = []
    options = SearchOptions(1.0, Objective.MEMORY, score_items=10, confirm_items=10)
    search_modes(
        known_model(), known_items(10), options, progress=lambda f, m="", p=None: seen.append(f)
    )
    assert seen[-1] == 1.0 and all(0 <= f <= 1 for f in seen)
    assert all(b >= a for a, b in itertools.pairwise(seen))


def test_fine_tuning_trains_a_copy_on_the_items_in_neither_split() -> None:
    model = known_model()
    saved = copy.deepcopy(model.state_dict())
    options = SearchOptions(
        1.0, Objective.MEMORY, finetune_epochs=2, score_items=60, confirm_items=60
    )
    result = search_modes(model, known_items(100), options)
    assert result.finetune_epochs == 2 and result.chosen is not None
    # the chosen layer's weights stay +-alpha after a small step: nothing is lost
    assert result.confirm_accuracy == Accuracy(60, 60)
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    with pytest.raises(XnorlabError, match="no items are left"):
        search_modes(known_model(), known_items(30), options)  # 60 + 60 > 60 items: none left
