"""Main window: drops, errors shown inline with state kept, settings, themes, hooks, screenshot."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from panel_support import simulate_drop
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import QApplication, QComboBox
from pytestqt.qtbot import QtBot
from wcag import contrast

from xnorlab.binary.modes import Mode
from xnorlab.gui import style
from xnorlab.gui.app import SCREENSHOT_TIMEOUT_S, ExceptionHook
from xnorlab.gui.dialogs import HELP_PAGE, GettingStartedDialog
from xnorlab.gui.layer_table import COL
from xnorlab.gui.main_window import MainWindow, settings
from xnorlab.lab.session import LabSession
from xnorlab.models.spec import CHECKPOINT_DIR

WAIT_MS = 30_000


@pytest.fixture
def window(tiny_window: MainWindow) -> MainWindow:
    return tiny_window


def drop(window: MainWindow, *paths: Path) -> None:
    simulate_drop(window, list(paths))


def test_bad_model_drop_shows_an_error_and_keeps_state(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    session = window.session
    session.set_mode(session.layer_names()[1], "xnor")
    model, modes = session.model, session.modes()
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"this is not a checkpoint at all")  # no pickle header: no trust question
    drop(window, corrupt)  # loaded in a worker; the error comes back to the window
    qtbot.waitUntil(lambda: "corrupt.pt" in window.message_bar.text(), timeout=WAIT_MS)
    assert session.model is model and session.modes() == modes
    assert window.table.model.rowCount() == 4


def test_unsupported_drop_is_refused(window: MainWindow, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    model = window.session.model
    drop(window, notes)
    assert "unsupported file type" in window.message_bar.text()
    assert window.session.model is model
    window.message_bar.clear()
    image = tmp_path / "digit.png"
    QImage(28, 28, QImage.Format.Format_Grayscale8).save(str(image))
    drop(window, image)  # no prediction panel in this window
    assert "not available" in window.message_bar.text()


def test_model_file_drop_opens_it_with_its_default_data(qtbot: QtBot, window: MainWindow) -> None:
    checkpoint = CHECKPOINT_DIR / "lenet-float.pt"
    drop(window, checkpoint)
    session = window.session
    qtbot.waitUntil(lambda: session.model_name == str(checkpoint), timeout=WAIT_MS)
    assert window.table.model.rowCount() == len(session.layer_names()) == 4
    # mnist5k is the slowest bundled dataset to load, slower still on a shared machine
    qtbot.waitUntil(lambda: session.dataset_spec == "mnist5k", timeout=3 * WAIT_MS)
    assert session.sample_batch(4)[0].shape == (4, 1, 28, 28)
    assert window.message_bar.text() == ""
    assert "lenet-float.pt" in window.model_label.text()
    assert "mnist5k" in window.data_label.text()
    assert settings().value("last_model") == str(checkpoint)


def test_bulk_actions_and_undo_redo_actions(window: MainWindow) -> None:
    session, actions = window.session, window.actions_by_name
    assert actions["undo"].shortcut().toString() == "Ctrl+Z"
    assert actions["redo"].shortcut().toString() == "Ctrl+Shift+Z"
    assert not actions["undo"].isEnabled()
    actions["all_xnor"].trigger()
    assert set(session.modes().values()) == {Mode.XNOR}
    actions["paper"].trigger()
    assert session.modes() == {"0": "float", "3": "xnor", "5": "xnor", "7": "float"}
    assert actions["undo"].isEnabled() and "paper" in actions["undo"].text()
    actions["undo"].trigger()
    assert set(session.modes().values()) == {Mode.XNOR}
    actions["redo"].trigger()
    assert session.modes()["0"] is Mode.FLOAT
    session.select("3")
    actions["selected_bwn"].trigger()
    assert session.modes()["3"] is Mode.BWN


def test_session_errors_and_uncaught_exceptions_show_one_line(window: MainWindow) -> None:
    window.session.attempt(window.session.apply_pattern, "nothing*", "xnor")
    assert "matches no layer" in window.message_bar.text()
    hook = ExceptionHook()
    hook.window = window
    try:
        raise ValueError("something odd\nsecond line")
    except ValueError as exc:
        hook(type(exc), exc, exc.__traceback__)
    assert window.message_bar.text() == (
        "internal error: ValueError: something odd (details in the log)"
    )


def test_settings_remember_layout_theme_and_recent_models(qtbot: QtBot, window: MainWindow) -> None:
    window.remember_model("demo:lenet")
    window.remember_model("resnet18")
    window.remember_model("demo:lenet")
    assert window.recent_models() == ["demo:lenet", "resnet18"]
    assert [a.text() for a in window.recent_menu.actions()] == ["demo:lenet", "resnet18"]
    window.docks["views"].hide()
    window.set_theme("dark")
    window.close()
    again = MainWindow(LabSession(), panels=False)
    qtbot.addWidget(again)
    assert again.docks["views"].isHidden()
    assert style.theme().name == "dark" and again.actions_by_name["dark"].isChecked()
    again.set_theme("light")


def test_a_window_that_does_not_remember_leaves_the_settings_alone(
    qtbot: QtBot, window: MainWindow
) -> None:
    """The screenshot mode's window: the user's last model, recent list and layout stay."""
    window.remember_model("resnet18")
    window.close()
    before = {key: settings().value(key) for key in settings().allKeys()}
    shot = MainWindow(LabSession(), panels=False)
    qtbot.addWidget(shot)
    shot.remembers = False
    shot.resize(400, 300)
    shot.remember_model("demo:lenet")
    shot.close()
    after = {key: settings().value(key) for key in settings().allKeys()}
    assert after == before and after["last_model"] == "resnet18"


def test_a_code_spec_is_recent_but_never_reopened_by_itself(
    qtbot: QtBot, window: MainWindow
) -> None:
    window.remember_model("demo:lenet")
    window.remember_model("my_net.py:Net")
    assert window.recent_models()[0] == "my_net.py:Net"  # the user may pick it again
    assert settings().value("last_model") == "demo:lenet"  # the next start runs no code


@pytest.mark.parametrize("name", style.THEMES)
def test_palettes_are_readable(window: MainWindow, name: str) -> None:
    window.set_theme(name)
    pal = QApplication.instance().palette()  # type: ignore[union-attr]
    role = pal.ColorRole
    assert pal.color(role.Window) == QColor(style.theme(name).window)
    for fg, bg in ((role.WindowText, role.Window), (role.Text, role.Base),
                   (role.ButtonText, role.Button), (role.HighlightedText, role.Highlight)):  # fmt: skip
        assert contrast(pal.color(fg), pal.color(bg)) >= 4.5, (name, fg, bg)
    t = style.theme(name)
    assert contrast(QColor(t.error_text), QColor(t.error_bg)) >= 4.5
    for colour in (t.float_colour, t.bwn_colour, t.xnor_colour):
        assert contrast(QColor(colour), QColor(t.base)) >= 2.5  # mode names in the table
    window.set_theme("light")


def test_panels_are_docked(qtbot: QtBot, tiny_session: LabSession) -> None:
    win = MainWindow(tiny_session, panels=True)
    qtbot.addWidget(win)
    assert {"metrics", "prediction", "training"} <= set(win.docks)
    assert win.docks["metrics"].widget() is win.panels["metrics"]
    win.close()


def test_screenshot_command_writes_a_picture(tmp_path: Path) -> None:
    out = tmp_path / "shot.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "xnorlab.cli.main", "--screenshot", str(out), "demo:lenet"],
        capture_output=True, text=True, env=env, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    image = QImage(str(out))
    assert image.width() >= 1200 and image.height() >= 800
    colours = {
        image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)
    }
    assert len(colours) > 50  # not blank: text, plots and images were drawn


def test_screenshot_of_a_bad_model_reports_the_failure_at_once(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00not a model" * 50)
    out = tmp_path / "shot.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path)}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "xnorlab.cli.main", "--screenshot", str(out), str(bad)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    elapsed_s = time.monotonic() - started
    assert result.returncode == 1, result.stderr[-2000:]
    assert "the model did not open" in result.stderr and "bad.pt" in result.stderr
    assert not out.exists()
    # start-up (torch, Qt) plus one failed load: far below the settle timeout it used to wait
    assert elapsed_s < 0.5 * SCREENSHOT_TIMEOUT_S, elapsed_s


def test_a_model_that_fails_to_open_keeps_the_previous_one(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    session = window.session
    model = session.model
    broken = tmp_path / "odd.safetensors"
    broken.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage" * 3)
    for spec in (str(broken), "no_such_architecture_xyz", "demo:nothing"):
        window.message_bar.clear()
        window.open_model_async(spec)
        qtbot.waitUntil(lambda: window.message_bar.text() != "", timeout=WAIT_MS)
        assert session.model is model, spec
    assert window.table.model.rowCount() == 4
    assert window.windowTitle() == "xnorlab - tiny"


def test_toggling_in_the_table_changes_model_and_plots(qtbot: QtBot, window: MainWindow) -> None:
    session, views = window.session, window.views
    name = session.layer_names()[1]
    session.select(name)
    qtbot.waitUntil(
        lambda: views.current is not None and views.current.name == name, timeout=WAIT_MS
    )
    assert views.current is not None and views.current.mode is Mode.FLOAT
    combo = window.table.view.indexWidget(window.table.view_index(1, COL["mode"]))
    assert isinstance(combo, QComboBox)
    with qtbot.waitSignal(views.updated, timeout=WAIT_MS):
        combo.setCurrentIndex(combo.findText("xnor"))
        combo.activated.emit(combo.currentIndex())
    assert session.layer(name).mode is Mode.XNOR
    assert views.current is not None and views.current.mode is Mode.XNOR
    assert "XNOR" in views.header.text() and "(used)" in views.kmap.kmap_label.text
    assert window.actions_by_name["undo"].isEnabled()
    with qtbot.waitSignal(views.updated, timeout=WAIT_MS):
        window.actions_by_name["undo"].trigger()
    assert combo.currentText() == "float" and views.current.mode is Mode.FLOAT


def test_start_reopens_the_last_model_or_falls_back(qtbot: QtBot, tmp_path: Path) -> None:
    settings().setValue("last_model", str(tmp_path / "gone.pt"))
    win = MainWindow(LabSession(), panels=False)
    qtbot.addWidget(win)
    win.open_initial(None, "lenet")  # "lenet": the demo architecture, no checkpoint needed
    qtbot.waitUntil(lambda: win.session.loaded is not None, timeout=WAIT_MS)
    assert win.session.model_name == "lenet"
    assert "could not reopen the last model" in win.message_bar.label.text()
    assert settings().value("last_model") == "lenet"
    qtbot.waitUntil(lambda: not win.busy(), timeout=WAIT_MS)
    again = MainWindow(LabSession(), panels=False)
    qtbot.addWidget(again)
    again.open_initial(None, "demo:lenet")
    qtbot.waitUntil(lambda: again.session.loaded is not None, timeout=WAIT_MS)
    assert again.session.model_name == "lenet"  # the last model, not the default
    qtbot.waitUntil(lambda: not again.busy(), timeout=WAIT_MS)


def test_scaling_box_follows_the_layers(window: MainWindow) -> None:
    session, box = window.session, window.scaling_box
    assert box is not None and box.currentText() == "kmap"
    box.setCurrentIndex(box.findText("scalar"))
    box.activated.emit(box.currentIndex())
    assert {c.scaling.value for c in session.configs().values()} == {"scalar"}
    session.set_layer_config("3", scaling="none")
    assert box.currentIndex() == -1  # mixed
    window.actions_by_name["undo"].trigger()
    assert box.currentText() == "scalar"


def test_help_opens_the_bundled_getting_started_page(qtbot: QtBot, window: MainWindow) -> None:
    action = window.actions_by_name["getting_started"]
    assert action.shortcut().toString() == "F1"
    action.trigger()
    dialog = window.findChild(GettingStartedDialog)
    assert dialog is not None and dialog.isVisible() and not dialog.isModal()
    text = dialog.browser.toPlainText()
    for heading in ("What each part of the window shows", "Three things to try"):
        assert heading in text
    for part in ("Layer table", "Layer views", "Metrics", "Prediction", "Training"):
        assert part in text
    assert "http" not in HELP_PAGE.read_text(encoding="utf-8")  # offline: no outside links
    window.hint.label.linkActivated.emit("help")  # the fresh window's hint opens the same page
    assert window.findChildren(GettingStartedDialog) == [dialog]
    dialog.close()


def test_layers_menu_measures_sensitivity_in_the_table(qtbot: QtBot, window: MainWindow) -> None:
    action = window.actions_by_name["sensitivity"]
    assert action.shortcut().toString() == "Ctrl+M"
    assert action in window.menuBar().actions()[2].menu().actions()  # File, Edit, Layers
    window.session.apply_preset("paper")
    action.trigger()
    assert window.table.bar.isVisibleTo(window)
    qtbot.waitUntil(lambda: not window.busy(), timeout=WAIT_MS)
    assert window.table.sensitivity_shown()
    assert set(window.table.model.sensitivity) == set(window.session.layer_names())
    assert "The whole configuration costs" in window.table.bar.label.text()
