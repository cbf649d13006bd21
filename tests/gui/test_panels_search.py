"""SearchPanel: shows a front, applies a clicked point (undoable), locks, cancels, clears."""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from pathlib import Path

import pytest
import torch
from panel_support import lenet_session, wait_until_idle
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QColor
from pytestqt.qtbot import QtBot
from wcag import contrast

from xnorlab.binary.modes import Mode
from xnorlab.binary.surgery import wrapped_layers
from xnorlab.data.sampling import SampleInfo
from xnorlab.gui import style
from xnorlab.gui.export_actions import exports_of
from xnorlab.gui.main_window import MainWindow
from xnorlab.gui.panels.search import (
    MAX_MARKER_PX,
    MIN_MARKER_PX,
    PointRole,
    SearchPanel,
    marker_sizes,
    role_colour,
)
from xnorlab.gui.panels.training import TrainingPanel
from xnorlab.lab.session import SEARCH_LOCK_REASON, LabSession
from xnorlab.measure.front import Agreement, FrontPoint, Objective, SearchResult, pareto_front
from xnorlab.measure.intervals import Accuracy
from xnorlab.models.checkpoint import read_checkpoint
from xnorlab.models.loaded import LoadedModel
from xnorlab.search.walk import SearchOptions

pytestmark = pytest.mark.gui
GRAPHICS_CONTRAST = 3.0  # WCAG 2.1 non-text contrast: markers against the plot background


def point(names: list[str], binary: int, hits: int, latency_ms: float) -> FrontPoint:
    """The first ``binary`` layers XNOR, the rest float; ``hits`` of 100 right."""
    modes = {name: Mode.XNOR if i < binary else Mode.FLOAT for i, name in enumerate(names)}
    interval = (0.9 * latency_ms, 1.1 * latency_ms)
    return FrontPoint(modes, Accuracy(hits, 100), latency_ms, interval, 4000 - 1000 * binary)


def constructed_result(names: list[str]) -> SearchResult:
    """Float, one, two and three XNOR layers, all on the front; the two-layer point chosen
    (the fastest within the 2-point budget)."""
    points = [point(names, k, hits, ms) for k, hits, ms in ((0, 95, 4.0), (1, 94, 3.0),
                                                            (2, 93, 2.0), (3, 70, 1.0))]  # fmt: skip
    info = SampleInfo(100, 0, {0: 34, 1: 33, 2: 33})
    return SearchResult(
        points[0], pareto_front(points), points[2], Accuracy(92, 100), Accuracy(96, 100),
        2.0, Objective.LATENCY, Agreement.TOP1, info, info, 7,
    )  # fmt: skip


def keep(session: LabSession, result: SearchResult) -> None:
    """Store ``result`` as a finished search of the open model does."""
    job = session.begin_search(SearchOptions(budget_points=result.budget_points))
    assert session.end_search(job, result)


def click_point(qtbot: QtBot, panel: SearchPanel, index: int) -> None:
    """A real left click on the marker of point ``index``."""
    chart = panel.chart
    x, y = chart.point_position(index)
    scene = chart.getViewBox().mapViewToScene(QPointF(x, y))
    where = chart.mapFromScene(scene)
    qtbot.mouseClick(chart.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(where.x(), where.y()))


@pytest.fixture
def window(qtbot: QtBot, tiny_session: LabSession) -> MainWindow:
    win = MainWindow(tiny_session, panels=True)
    qtbot.addWidget(win)
    win.resize(1600, 1000)
    win.show()
    win.docks["search"].raise_()
    qtbot.waitUntil(lambda: not win.busy(), timeout=60_000)
    return win


def test_the_panel_shows_the_front_with_float_and_chosen_marked(window: MainWindow) -> None:
    session, panel = window.session, window.panels["search"]
    assert panel.table.rowCount() == 0 and not panel.summary.isVisible()
    result = constructed_result(session.layer_names())
    keep(session, result)
    assert panel.table.rowCount() == 4 == len(panel.chart.scatter.points())
    roles = [shown.role for shown in panel.points()]
    assert roles == [PointRole.FRONT, PointRole.CHOSEN, PointRole.FRONT, PointRole.FLOAT]
    assert [panel.chart.spot(i).symbol() for i in range(4)] == ["o", "star", "o", "d"]
    assert panel.chart.scatter.points()[-1].data() == 1  # the chosen star is drawn on top
    assert panel.table.item(1, 0).text() == "2 ★"
    assert panel.table.item(1, 0).font().bold() and not panel.table.item(0, 0).font().bold()
    assert panel.table.item(3, 0).text() == "4 float"
    assert panel.table.item(1, 1).text() == "93.0 [86.3, 96.6]"  # Wilson 95 % of 93/100
    assert panel.table.horizontalHeaderItem(1).text() == "top-1 % (n=100)"
    assert [panel.table.item(row, 4).text() for row in range(4)] == ["XXXF", "XXFF", "XFFF", "FFFF"]
    assert panel.chart.point_position(1) == pytest.approx((2.0, 93.0))
    sizes = [panel.chart.spot(i).size() for i in range(4)]
    assert sizes[0] == MIN_MARKER_PX and sizes[3] == MAX_MARKER_PX  # less memory, smaller
    assert "2 XNOR" in panel.chart.tips[1] and "XNOR: 0, 3" in panel.chart.tips[1]
    hover_tip = panel.chart.scatter.opts["tip"]  # what pyqtgraph shows over a hovered spot
    assert hover_tip(x=2.0, y=93.0, data=1) == panel.chart.tips[1]
    assert "chosen 92.00 %" in panel.summary.text() and "float 96.00 %" in panel.summary.text()
    assert panel.summary.isVisible()


def test_clicking_a_point_applies_its_modes_and_undo_restores_them(
    qtbot: QtBot, window: MainWindow
) -> None:
    session, panel = window.session, window.panels["search"]
    before = session.modes()
    result = constructed_result(session.layer_names())
    keep(session, result)
    click_point(qtbot, panel, 1)
    assert session.modes() == dict(result.chosen.modes)  # type: ignore[union-attr]
    assert window.actions_by_name["undo"].text() == "&Undo search point 2 (2.00 ms, 93.0 %)"
    assert [c.currentText() for c in window.table.mode_editors()][:2] == ["xnor", "xnor"]
    window.actions_by_name["undo"].trigger()
    assert session.modes() == before
    panel.table.cellClicked.emit(2, 0)  # a row of the table applies too
    assert session.modes() == dict(result.front[2].modes)
    assert "applied point 3" in panel.message.text()


def test_a_run_locks_the_modes_and_cancel_unlocks_keeping_nothing(qtbot: QtBot) -> None:
    session = lenet_session("float")
    panel = SearchPanel(session)
    qtbot.addWidget(panel)
    panel.items_spin.setValue(500)  # longer than the test waits
    messages: list[str] = []
    session.error.connect(messages.append)
    task = panel.start()
    assert task is not None and panel.busy() and not panel.start_button.isEnabled()
    assert session.lock_reason == SEARCH_LOCK_REASON
    assert session.attempt(session.apply_preset, "xnor") is None  # refused while it runs
    assert "search measures" in messages[-1]
    assert set(session.modes().values()) == {Mode.FLOAT}
    training = TrainingPanel(session)  # a run that would change the weights waits its turn
    qtbot.addWidget(training)
    training.start()
    assert not training.busy() and "cannot train now: a search" in training.message.text()
    assert session.lock_reason == SEARCH_LOCK_REASON
    qtbot.waitUntil(lambda: panel.progress.value() > 0, timeout=20_000)
    panel.cancel()
    wait_until_idle(panel, qtbot)
    assert "cancelled" in panel.message.text() and panel.progress.value() == 0
    assert not session.modes_locked and session.last_search is None
    assert panel.start_button.isEnabled() and not panel.cancel_button.isEnabled()


def test_refusals_show_as_one_line_in_the_message_bar(window: MainWindow) -> None:
    session, panel = window.session, window.panels["search"]
    session.lock_modes("a training run uses the current modes")
    assert panel.start() is None and not panel.busy()
    assert "cannot start a search now: a training run" in window.message_bar.text()
    assert panel.message.text() == window.message_bar.text()
    session.unlock_modes()


def test_another_model_clears_the_front(window: MainWindow) -> None:
    session, panel = window.session, window.panels["search"]
    keep(session, constructed_result(session.layer_names()))
    assert panel.table.rowCount() == 4
    session.adopt(LoadedModel("other", session.loaded.model, (1, 8, 8), ["a", "b", "c"]))  # type: ignore[union-attr]
    assert panel.table.rowCount() == 0 and panel.chart.scatter.points().size == 0
    assert session.last_search is None


def test_markers_stand_out_from_the_plot_in_both_themes(window: MainWindow) -> None:
    for name in ("dark", "light"):
        window.set_theme(name)
        theme = style.theme()
        background = QColor(theme.plot_bg)
        for role in PointRole:
            assert contrast(QColor(role_colour(role, theme)), background) >= GRAPHICS_CONTRAST
        keep(window.session, constructed_result(window.session.layer_names()))
        spot = window.panels["search"].chart.spot(1)
        assert spot.brush().color().name() == theme.accent  # redrawn in the new theme


def test_marker_size_follows_memory() -> None:
    assert marker_sizes([300, 100, 200]) == [MAX_MARKER_PX, MIN_MARKER_PX,
                                             (MIN_MARKER_PX + MAX_MARKER_PX) / 2]  # fmt: skip
    assert marker_sizes([5, 5]) == [(MIN_MARKER_PX + MAX_MARKER_PX) / 2] * 2


def test_the_real_search_on_the_demo_net_fills_the_panel(qtbot: QtBot) -> None:
    session = lenet_session("float")
    panel = SearchPanel(session)
    qtbot.addWidget(panel)
    panel.items_spin.setValue(40)
    panel.budget_spin.setValue(5.0)
    started = time.monotonic()
    panel.start()
    wait_until_idle(panel, qtbot, timeout_s=120)
    seconds = time.monotonic() - started
    result = session.last_search
    assert result is not None, panel.message.text()
    assert result.score_sample.count == 40 and result.budget_points == 5.0
    assert panel.table.rowCount() == len(session.search_points()) >= 1
    if result.chosen is not None:
        floor = result.float_point.accuracy.value - 0.05
        assert result.chosen.accuracy.value >= floor - 1e-9
    assert not session.modes_locked and "done" in panel.message.text()
    assert seconds < 120


def test_the_exported_report_carries_the_last_search(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    session = window.session
    exports = exports_of(window)
    exports.sensitivity_action.setChecked(False)  # not what this test is about
    result = constructed_result(session.layer_names())
    keep(session, result)
    task = exports.export_report(str(tmp_path / "with.json"))
    assert task is not None
    qtbot.waitUntil(lambda: task.done, timeout=60_000)
    written = json.loads((tmp_path / "with.json").read_text())
    assert written["search"] == json.loads(json.dumps(result.to_json()))
    session.mark_weights_changed("fine-tuned")  # the front no longer answers for this model
    task = exports.export_report(str(tmp_path / "without.json"))
    assert task is not None
    qtbot.waitUntil(lambda: task.done, timeout=60_000)
    assert "search" not in json.loads((tmp_path / "without.json").read_text())


def test_without_a_model_the_panel_says_what_is_missing(qtbot: QtBot) -> None:
    session = LabSession()
    panel = SearchPanel(session)
    qtbot.addWidget(panel)
    assert panel.start() is None and not panel.busy()
    assert "open a model first" in panel.message.text()
    assert panel.apply(0) is None and panel.table.rowCount() == 0
    assert not session.modes_locked


def finetuned(session: LabSession, result: SearchResult, epochs: int = 3) -> SearchResult:
    """``result`` as a search that fine-tuned its chosen modes: other weights, those modes."""
    assert result.chosen is not None
    tuned = copy.deepcopy(session.model)
    with torch.no_grad():
        for parameter in tuned.parameters():
            parameter.mul_(0.5)
    for name, layer in wrapped_layers(tuned).items():
        layer.config = layer.config.updated(mode=result.chosen.modes[name])
    return dataclasses.replace(result, finetune_epochs=epochs, finetuned_model=tuned)


def test_a_choice_over_budget_on_the_confirm_split_is_said_in_the_summary(
    window: MainWindow,
) -> None:
    session, panel = window.session, window.panels["search"]
    over = constructed_result(session.layer_names())  # confirm 92 vs float 96, budget 2
    keep(session, over)
    lines = [line for line in panel.summary.text().splitlines() if "budget of 2" in line]
    assert len(lines) == 1 and "loses 4.0 points" in lines[0]
    assert "try fine-tune epochs" in lines[0]
    within = dataclasses.replace(over, confirm_accuracy=Accuracy(94, 100))  # 2 points: within
    keep(session, within)
    assert "⚠" not in panel.summary.text() and "chosen 94.00 %" in panel.summary.text()


def test_after_a_fine_tuned_search_the_user_gets_the_fine_tuned_weights(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    session, panel = window.session, window.panels["search"]
    training = window.panels["training"]
    keep(session, constructed_result(session.layer_names()))
    assert not panel.adopt_button.isVisible()  # nothing fine-tuned: nothing to offer
    result = finetuned(session, constructed_result(session.layer_names()))
    assert result.finetuned_model is not None and result.chosen is not None
    tuned = {k: v.clone() for k, v in result.finetuned_model.state_dict().items()}
    own = {k: v.clone() for k, v in session.model.state_dict().items()}
    keep(session, result)
    assert panel.adopt_button.isVisible() and panel.adopt_button.isEnabled()
    assert "fine-tuned 3 epochs" in panel.summary.text()
    assert "Use fine-tuned weights" in panel.summary.text()
    click_point(qtbot, panel, 1)  # the chosen point: its modes, on the model's own weights
    assert session.modes() == dict(result.chosen.modes)
    assert all(torch.equal(v, own[k]) for k, v in session.model.state_dict().items())
    assert "its modes only" in panel.message.text()
    window.actions_by_name["undo"].trigger()
    qtbot.mouseClick(panel.adopt_button, Qt.MouseButton.LeftButton)
    assert session.modes() == dict(result.chosen.modes)
    assert all(torch.equal(v, tuned[k]) for k, v in session.model.state_dict().items())
    assert session.weights_note == "fine-tuned by search"
    assert "the weights fine-tuned for them" in panel.message.text()
    assert session.last_search is None and panel.table.rowCount() == 0
    assert not panel.adopt_button.isVisible()
    saved = training.save(tmp_path / "searched.pt")  # what the app saves carries the search
    assert saved is not None
    card = read_checkpoint(saved).meta["card"]  # the tiny model has no architecture to build
    assert card["search"]["finetune_epochs"] == 3 and card["search"]["budget_points"] == 2.0
