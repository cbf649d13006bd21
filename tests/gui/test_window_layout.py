"""Layout at 1600 x 1000: nothing moves under the pointer, nothing is cut off, no empty table."""

from __future__ import annotations

from collections import OrderedDict

import pytest
from PySide6.QtCore import QModelIndex, Qt, QTimer
from PySide6.QtWidgets import QApplication, QDialog, QToolBar, QToolButton
from pytestqt.qtbot import QtBot
from torch import nn

from xnorlab.gui.dialogs import PatternDialog
from xnorlab.gui.layer_table import COL
from xnorlab.gui.main_window import MainWindow, settings
from xnorlab.lab.session import LabSession
from xnorlab.models.loaded import LoadedModel

pytestmark = pytest.mark.gui
WAIT_MS = 60_000


def shown(qtbot: QtBot, session: LabSession, panels: bool = True) -> MainWindow:
    window = MainWindow(session, panels=panels)
    qtbot.addWidget(window)
    window.resize(1600, 1000)
    window.show()
    qtbot.waitExposed(window)
    qtbot.waitUntil(lambda: not window.busy(), timeout=WAIT_MS)
    QApplication.processEvents()
    return window


def toolbar_buttons(window: MainWindow) -> dict[str, int]:
    """Left edge (px) of every toolbar button, by its text."""
    bar = window.findChild(QToolBar)
    assert bar is not None
    return {b.text(): b.x() for b in bar.findChildren(QToolButton) if b.isVisible() and b.text()}


def test_toolbar_buttons_stay_put_as_undo_grows(qtbot: QtBot, tiny_session: LabSession) -> None:
    window = shown(qtbot, tiny_session, panels=False)
    before = toolbar_buttons(window)
    window.actions_by_name["paper"].trigger()
    window.actions_by_name["all_xnor"].trigger()
    window.actions_by_name["undo"].trigger()
    QApplication.processEvents()
    assert "preset all" not in "".join(toolbar_buttons(window))
    assert toolbar_buttons(window) == before
    undo = window.actions_by_name["undo"]
    assert "preset paper" in undo.text() and "preset paper" in undo.toolTip()  # menu, tooltip


def test_first_and_last_names_recolour_when_set_back_to_float(
    qtbot: QtBot, tiny_session: LabSession
) -> None:
    window = shown(qtbot, tiny_session, panels=False)
    model = window.table.model
    changed: list[tuple[int, int, int]] = []

    def record(first: QModelIndex, last: QModelIndex, *_: object) -> None:
        changed.extend((row, first.column(), last.column())
                       for row in range(first.row(), last.row() + 1))  # fmt: skip

    model.dataChanged.connect(record)
    first = tiny_session.layer_names()[0]
    tiny_session.set_mode(first, "xnor")
    red = model.index(0, COL["name"]).data(Qt.ItemDataRole.ForegroundRole)
    tiny_session.set_mode(first, "float")
    muted = model.index(0, COL["name"]).data(Qt.ItemDataRole.ForegroundRole)
    assert red != muted
    assert any(row == 0 and lo <= COL["name"] <= hi for row, lo, hi in changed)  # repainted


def long_named_net() -> nn.Module:
    """24 layers with resnet-like long dotted names: more rows than the table shows (a
    vertical scroll bar takes width too) and wide name and alpha columns."""
    stages = OrderedDict(
        (f"stage{i}", nn.Sequential(OrderedDict(
            (f"block{j}", nn.Sequential(OrderedDict(
                downsample=nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)),
            )))
            for j in range(4)
        )))
        for i in range(6)
    )  # fmt: skip
    return nn.Sequential(
        nn.Sequential(stages), nn.Flatten(), nn.Linear(8 * 16 * 16, 10), nn.Linear(10, 10)
    )


def test_table_columns_fit_without_a_scroll_bar(qtbot: QtBot) -> None:
    session = LabSession()
    session.adopt(LoadedModel("long", long_named_net(), (8, 16, 16)))
    window = shown(qtbot, session)
    view = window.table.view
    assert window.table.model.rowCount() == 26
    assert view.verticalScrollBar().maximum() > 0  # more rows than fit
    assert view.horizontalScrollBar().maximum() == 0, "a column is behind a scroll bar"
    header = view.horizontalHeader()
    current = COL["current_ms"]
    right_edge = header.sectionViewportPosition(current) + header.sectionSize(current)
    assert right_edge <= view.viewport().width()
    window.close()


def test_a_small_model_leaves_no_empty_table(qtbot: QtBot, tiny_session: LabSession) -> None:
    window = shown(qtbot, tiny_session)
    QApplication.processEvents()
    view = window.table.view
    rows = window.table.model.rowCount() * view.verticalHeader().defaultSectionSize()
    empty = view.viewport().height() - rows
    assert empty <= 2 * view.verticalHeader().defaultSectionSize(), (empty, rows)
    assert window.docks["views"].height() > 0.55 * window.height()  # the views got the room
    window.close()


def test_pattern_dialog_shows_its_title_and_both_fields(qtbot: QtBot) -> None:
    dialog = PatternDialog(["conv1", "conv2"])
    qtbot.addWidget(dialog)
    dialog.show()
    title_px = dialog.fontMetrics().horizontalAdvance(dialog.windowTitle())
    assert dialog.width() >= title_px + 100
    assert dialog.pattern_edit.isVisible() and dialog.mode_box.isVisible()

    def answer() -> None:
        dialog.pattern_edit.setText("conv*")
        dialog.mode_box.setCurrentText("bwn")
        dialog.accept()

    QTimer.singleShot(0, answer)
    assert dialog.choice() == ("conv*", "bwn")


def test_pattern_action_applies_the_dialogs_choice(
    qtbot: QtBot, tiny_session: LabSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = shown(qtbot, tiny_session, panels=False)
    monkeypatch.setattr(PatternDialog, "exec", lambda self: QDialog.DialogCode.Accepted)
    monkeypatch.setattr(PatternDialog, "choice", lambda self: ("?", "bwn"))
    window.actions_by_name["pattern"].trigger()
    modes = tiny_session.modes()
    assert [str(modes[n]) for n in ("0", "3", "5", "7")] == ["bwn", "bwn", "bwn", "bwn"]


def test_status_bar_is_never_blank(qtbot: QtBot, tiny_session: LabSession) -> None:
    window = shown(qtbot, tiny_session, panels=False)
    bar = window.statusBar()

    def status() -> str:
        """What the left of the status bar shows: a short message, else the resting text."""
        return bar.currentMessage() or (
            window.state_label.text() if window.state_label.isVisible() else ""
        )

    combo = window.table.mode_editors()[1]
    combo.setCurrentIndex(combo.findText("xnor"))
    combo.activated.emit(combo.currentIndex())
    assert "-> xnor" in status()
    bar.clearMessage()  # what hovering a combo's popup or a menu does
    QApplication.processEvents()
    assert "1 XNOR" in status() and "last change" in status()
    window.actions_by_name["all_bwn"].trigger()  # the shortcut's action
    bar.clearMessage()
    QApplication.processEvents()
    assert "4 BWN" in status()


def test_fresh_window_shows_a_hint_until_the_first_change(
    qtbot: QtBot, tiny_session: LabSession
) -> None:
    window = shown(qtbot, tiny_session, panels=False)
    assert window.hint.isVisible() and "Getting started" in window.hint.label.text()
    window.actions_by_name["paper"].trigger()
    assert not window.hint.isVisible()
    assert settings().value("hint_done", False, type=bool)
    again = shown(qtbot, LabSession(), panels=False)
    assert not again.hint.isVisible()  # remembered
    assert "Open model" in again.state_text()
