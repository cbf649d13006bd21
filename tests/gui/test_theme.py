"""Theme switching: every label, shown or hidden at the switch, follows the theme both ways."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QApplication, QLabel
from pytestqt.qtbot import QtBot
from wcag import contrast

from xnorlab.gui import style
from xnorlab.gui.main_window import MainWindow
from xnorlab.gui.message_bar import MessageBar
from xnorlab.gui.panels.base import show_message
from xnorlab.lab.session import LabSession

pytestmark = pytest.mark.gui
READABLE = 4.5  # WCAG AA for normal text


def unreadable_labels(window: MainWindow) -> list[str]:
    """Labels (outside the message bar, which has its own colours) whose text colour does not
    stand out from the window colour of the current theme."""
    background = QColor(style.theme().window)
    bad = []
    for label in window.findChildren(QLabel):
        if isinstance(label.parentWidget(), MessageBar):
            continue
        text = label.palette().color(label.foregroundRole())
        if contrast(text, background) < READABLE:
            bad.append(f"{label.objectName() or label.text()[:30]!r}: {text.name()}")
    return bad


@pytest.fixture
def window(qtbot: QtBot, tiny_session: LabSession) -> MainWindow:
    win = MainWindow(tiny_session, panels=True)
    qtbot.addWidget(win)
    win.resize(1600, 1000)
    win.show()
    qtbot.waitUntil(lambda: not win.busy(), timeout=60_000)
    return win


def test_every_label_follows_the_theme_both_ways(qtbot: QtBot, window: MainWindow) -> None:
    metrics = window.panels["metrics"]
    show_message(metrics.acc_message, "an error line", error=True)
    toggle = window.actions_by_name["dark"]
    for expected in ("dark", "light", "dark", "light"):
        window.docks["training"].raise_()  # the metrics labels are hidden at the switch
        QApplication.processEvents()
        toggle.trigger()  # Ctrl+Shift+T
        assert style.theme().name == expected
        window.docks["metrics"].raise_()
        QApplication.processEvents()
        assert unreadable_labels(window) == [], expected
        for label in (metrics.float_mem, metrics.float_acc, metrics.acc_message):
            assert label.isVisible()


def test_theme_switch_repaints_toned_widgets_from_its_register_not_by_walking_qt(
    qtbot: QtBot,
) -> None:
    """Toned labels are registered once, leave the register when Qt deletes them, and the
    next theme switch repaints the live ones in the new theme's colours."""
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    keep, gone = QLabel("kept"), QLabel("deleted")
    qtbot.addWidget(keep)
    for _ in range(3):
        style.set_tone(keep, style.Tone.ERROR)
    style.set_tone(gone, style.Tone.MUTED)
    assert sum(widget is keep for widget in style.toned_widgets()) == 1
    assert any(widget is gone for widget in style.toned_widgets())
    gone.deleteLater()
    qtbot.waitUntil(lambda: not any(widget is gone for widget in style.toned_widgets()))
    before = style.theme().name
    try:
        for name in ("dark", "light"):
            style.apply_theme(app, name)
            shown = keep.palette().color(keep.foregroundRole()).name()
            assert shown == style.theme(name).error_fg
    finally:
        style.apply_theme(app, before)
