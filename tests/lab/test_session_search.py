"""LabSession and the search: the lock while it runs, the kept result, applying a point."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch.utils.data import TensorDataset

from xnorlab.binary.modes import Mode
from xnorlab.binary.surgery import wrapped_layers
from xnorlab.common.errors import XnorlabError
from xnorlab.common.tasks import Cancelled
from xnorlab.data.bundle import DatasetBundle
from xnorlab.data.images import Preprocessing
from xnorlab.data.sampling import NO_LABEL, SampleInfo, dataset_labels
from xnorlab.lab.session import SEARCH_LOCK_REASON, LabSession
from xnorlab.measure.front import Agreement, FrontPoint, Objective, SearchResult, pareto_front
from xnorlab.measure.intervals import Accuracy
from xnorlab.models.loaded import LoadedModel
from xnorlab.search.walk import SearchOptions

SHAPE = (1, 8, 8)


def tiny_net() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 8 * 8, 5),
        torch.nn.Linear(5, 3),
    )


def bundle(n: int = 30) -> DatasetBundle:
    inputs = torch.randn(n, *SHAPE, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(n) % 3
    empty = TensorDataset(torch.empty(0, *SHAPE), torch.empty(0, dtype=torch.long))
    prep = Preprocessing(1, 8, 8, mean=(0.5,), std=(0.5,))
    return DatasetBundle("fake", empty, TensorDataset(inputs, labels), ["a", "b", "c"], prep)


@pytest.fixture
def session() -> LabSession:
    lab = LabSession()
    lab.adopt(LoadedModel("tiny", tiny_net(), SHAPE, ["a", "b", "c"]))
    lab.set_dataset(bundle(), "fake")
    return lab


def point(names: list[str], binary: int, hits: int, latency_ms: float) -> FrontPoint:
    """The first ``binary`` layers XNOR, the rest float; ``hits`` of 100 right."""
    modes = {name: Mode.XNOR if i < binary else Mode.FLOAT for i, name in enumerate(names)}
    interval = (0.9 * latency_ms, 1.1 * latency_ms)
    return FrontPoint(modes, Accuracy(hits, 100), latency_ms, interval, 1000 - 200 * binary)


def result_for(names: list[str], float_on_front: bool = True) -> SearchResult:
    """A search over ``names``: float, one and two XNOR layers; the one-layer point chosen.
    With ``float_on_front=False`` the one-layer point is as accurate as float and faster, so it
    dominates the float point."""
    float_point = point(names, 0, 90, 2.0)
    one = point(names, 1, 90 if not float_on_front else 89, 1.5)
    two = point(names, 2, 80, 1.0)
    info = SampleInfo(100, 0, {0: 34, 1: 33, 2: 33})
    return SearchResult(
        float_point, pareto_front([float_point, one, two]), one, Accuracy(88, 100),
        Accuracy(91, 100), 1.0, Objective.LATENCY, Agreement.TOP1, info, info, 3,
    )  # fmt: skip


def keep(session: LabSession, result: SearchResult) -> None:
    """Store ``result`` as a finished search of the open model would."""
    job = session.begin_search(SearchOptions(budget_points=1.0))
    assert session.end_search(job, result)


def test_a_started_search_locks_the_modes_until_it_ends(session: LabSession) -> None:
    locks: list[str] = []
    session.lock_changed.connect(locks.append)
    job = session.begin_search(SearchOptions(budget_points=2.0, score_items=12))
    assert session.lock_reason == SEARCH_LOCK_REASON
    assert job.loaded is session.loaded and job.options.budget_points == 2.0
    assert job.model is not session.model  # a snapshot...
    assert job.model[0].weight is session.model[0].weight  # ...sharing the weights
    with pytest.raises(XnorlabError, match="search measures"):
        session.set_mode("0", "xnor")
    with pytest.raises(XnorlabError, match="cannot start a search now"):
        session.begin_search(SearchOptions(budget_points=1.0))
    assert session.end_search(job, None) is False  # cancelled or failed: nothing kept
    assert not session.modes_locked and session.last_search is None
    assert locks == [SEARCH_LOCK_REASON, ""]


def test_a_search_needs_a_model_something_to_score_on_and_no_other_run(
    session: LabSession,
) -> None:
    with pytest.raises(XnorlabError, match="open a model"):
        LabSession().begin_search(SearchOptions(budget_points=1.0))
    flat = LabSession()  # no dataset, and no photo fits an input of 10 numbers
    flat.adopt(LoadedModel("flat", torch.nn.Sequential(torch.nn.Linear(10, 3)), (10,), []))
    with pytest.raises(XnorlabError, match="no dataset to score modes on and the bundled photos"):
        flat.begin_search(SearchOptions(budget_points=1.0))
    assert not flat.modes_locked
    session.lock_modes("a training run uses the current modes")
    with pytest.raises(XnorlabError, match="training run"):
        session.begin_search(SearchOptions(budget_points=1.0))
    assert session.lock_reason == "a training run uses the current modes"  # not taken over


def test_without_a_dataset_the_search_runs_on_the_unlabelled_photos() -> None:
    bare = LabSession()
    bare.adopt(LoadedModel("tiny", tiny_net(), SHAPE, ["a", "b", "c"]))
    with pytest.raises(XnorlabError, match="fine-tuning needs labels"):
        bare.begin_search(SearchOptions(budget_points=1.0, finetune_epochs=1))
    assert not bare.modes_locked
    job = bare.begin_search(SearchOptions(budget_points=1.0))
    items = job.items()
    assert job.dataset is None and job.finetune_data is None
    assert len(items) > 8 and set(dataset_labels(items).tolist()) == {NO_LABEL}
    assert tuple(items[0][0].shape) == SHAPE
    bare.end_search(job, None)


def test_the_result_is_kept_and_a_point_applies_as_one_undo_step(session: LabSession) -> None:
    names = session.layer_names()
    result = result_for(names)
    changes: list[bool] = []
    session.search_changed.connect(lambda: changes.append(True))
    keep(session, result)
    assert session.last_search is result and changes == [True]
    named = session.search_points()
    assert [name for name, _ in named] == ["1", "2", "3"]  # the front, fastest first
    assert named[2][1].modes == result.float_point.modes  # float is on this front
    before = session.modes()
    assert session.apply_search_point(1) == names[:1]
    assert session.modes() == dict(result.front[1].modes)
    assert session.undo_label == "search point 2 (1.50 ms, 89.0 %)"
    session.undo()
    assert session.modes() == before
    with pytest.raises(XnorlabError, match="no search point 7"):
        session.apply_search_point(7)


def test_a_float_point_off_the_front_is_offered_first(session: LabSession) -> None:
    keep(session, result_for(session.layer_names(), float_on_front=False))
    named = session.search_points()
    assert [name for name, _ in named] == ["float", "1", "2"]
    session.apply_search_point(2)
    session.apply_search_point(0)
    assert set(session.modes().values()) == {Mode.FLOAT}
    assert session.undo_label == "search float point (2.00 ms, 90.0 %)"


def test_a_result_of_a_model_no_longer_open_is_dropped(session: LabSession) -> None:
    job = session.begin_search(SearchOptions(budget_points=1.0))
    session.adopt(LoadedModel("other", tiny_net(), SHAPE, ["a", "b", "c"]))
    assert session.end_search(job, result_for(session.layer_names())) is False
    assert session.last_search is None and not session.modes_locked


def test_another_model_or_new_weights_clear_the_result(session: LabSession) -> None:
    keep(session, result_for(session.layer_names()))
    session.mark_weights_changed("fine-tuned")
    assert session.last_search is None
    keep(session, result_for(session.layer_names()))
    cleared: list[bool] = []
    session.search_changed.connect(lambda: cleared.append(True))
    session.adopt(LoadedModel("other", tiny_net(), SHAPE, ["a", "b", "c"]))
    assert session.last_search is None and session.search_points() == [] and cleared == [True]
    with pytest.raises(XnorlabError, match="no search result"):
        session.apply_search_point(0)


@pytest.mark.slow  # timing every candidate through the engine: ~9 s on a busy machine
def test_run_search_measures_the_open_model_and_keeps_the_result(session: LabSession) -> None:
    fractions: list[float] = []
    modes = session.modes()
    result = session.run_search(
        SearchOptions(budget_points=5.0, score_items=15, confirm_items=15),
        progress=lambda fraction, *_: fractions.append(fraction),
    )
    assert session.last_search is result and not session.modes_locked
    assert result.score_sample.count == 15 and result.confirm_sample.count == 15
    assert result.float_point.modes == modes  # the float reference is this model, all float
    assert fractions and fractions[-1] == 1.0
    assert session.modes() == modes  # measuring changed nothing


def test_a_cancelled_run_unlocks_and_keeps_nothing(session: LabSession) -> None:
    with pytest.raises(Cancelled):
        session.run_search(SearchOptions(budget_points=1.0), should_cancel=lambda: True)
    assert not session.modes_locked and session.last_search is None


def test_options_no_search_can_run_with_are_refused_before_locking(session: LabSession) -> None:
    with pytest.raises(XnorlabError, match="budget"):
        session.begin_search(SearchOptions(budget_points=-1.0))
    assert not session.modes_locked


def finetuned_result(session: LabSession, epochs: int = 2) -> SearchResult:
    """``result_for`` as a fine-tuned search: its chosen modes with other weights."""
    result = result_for(session.layer_names())
    assert result.chosen is not None
    tuned = copy.deepcopy(session.model)
    with torch.no_grad():
        for parameter in tuned.parameters():
            parameter.add_(1.0)
    for name, layer in wrapped_layers(tuned).items():
        layer.config = layer.config.updated(mode=result.chosen.modes[name])
    return dataclasses.replace(result, finetune_epochs=epochs, finetuned_model=tuned)


def test_clicking_a_point_of_a_fine_tuned_search_applies_its_modes_only(
    session: LabSession,
) -> None:
    weights = {k: v.clone() for k, v in session.model.state_dict().items()}
    result = finetuned_result(session)
    keep(session, result)
    assert session.search_finetuned
    session.apply_search_point(1)  # the chosen point, clicked
    assert session.modes() == dict(result.front[1].modes)
    assert all(torch.equal(v, weights[k]) for k, v in session.model.state_dict().items())
    assert session.last_search is result and session.weights_note == ""


def test_adopting_a_fine_tuned_search_takes_its_modes_and_weights(session: LabSession) -> None:
    result = finetuned_result(session, epochs=2)
    assert result.chosen is not None and result.finetuned_model is not None
    tuned = {k: v.clone() for k, v in result.finetuned_model.state_dict().items()}
    keep(session, result)
    weights_events: list[bool] = []
    session.weights_changed.connect(lambda: weights_events.append(True))
    before = session.modes()
    changed = session.adopt_search_finetuned()
    assert changed == [name for name, m in result.chosen.modes.items() if m != before[name]]
    assert session.modes() == dict(result.chosen.modes)
    assert all(torch.equal(v, tuned[k]) for k, v in session.model.state_dict().items())
    assert session.weights_note == "fine-tuned by search" and weights_events == [True]
    assert session.display_name == "tiny (fine-tuned by search)"
    card = session.weights_card["search"]
    assert card["finetune_epochs"] == 2 and card["budget_points"] == 1.0
    assert card["modes"] == {k: str(v) for k, v in result.chosen.modes.items()}
    assert session.last_search is None  # the front measured the old weights
    assert session.undo_label == "search point 2 (1.50 ms, 89.0 %), fine-tuned"
    session.undo()  # the modes go back; the weights stay (as after training)
    assert session.modes() == before
    assert all(torch.equal(v, tuned[k]) for k, v in session.model.state_dict().items())


def test_adopting_needs_a_fine_tuned_result_and_unlocked_modes(session: LabSession) -> None:
    with pytest.raises(XnorlabError, match="no fine-tuned weights"):
        session.adopt_search_finetuned()
    keep(session, result_for(session.layer_names()))  # searched without a fine-tune
    assert not session.search_finetuned
    with pytest.raises(XnorlabError, match="no fine-tuned weights"):
        session.adopt_search_finetuned()
    keep(session, finetuned_result(session))
    weights = {k: v.clone() for k, v in session.model.state_dict().items()}
    modes = session.modes()
    session.lock_modes("a training run uses the current modes")
    with pytest.raises(XnorlabError, match="training run"):
        session.adopt_search_finetuned()
    assert session.modes() == modes and session.last_search is not None
    assert all(torch.equal(v, weights[k]) for k, v in session.model.state_dict().items())


@pytest.mark.slow  # the search above (~9 s on a busy machine) plus a 1-epoch fine-tune
def test_a_fine_tuned_search_run_here_leaves_its_weights_to_adopt() -> None:
    lab = LabSession()
    lab.adopt(LoadedModel("tiny", tiny_net(), SHAPE, ["a", "b", "c"]))
    data = bundle(30)
    lab.set_dataset(DatasetBundle("fake", data.val, data.val, data.class_names,
                                  data.preprocessing), "fake")  # fmt: skip
    # 100 points admit every point: the smallest (binary) one is chosen
    options = SearchOptions(
        budget_points=100.0,
        objective=Objective.MEMORY,
        finetune_epochs=1,
        score_items=9,
        confirm_items=9,
    )
    result = lab.run_search(options)
    assert result.chosen is not None and result.finetuned_model is not None
    assert result.finetuned_model is not lab.model
    tuned = {k: v.clone() for k, v in result.finetuned_model.state_dict().items()}
    assert any(not torch.equal(v, tuned[k]) for k, v in lab.model.state_dict().items())
    lab.adopt_search_finetuned()
    assert lab.modes() == dict(result.chosen.modes)
    assert all(torch.equal(v, tuned[k]) for k, v in lab.model.state_dict().items())
