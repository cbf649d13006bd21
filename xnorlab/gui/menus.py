"""Menus, toolbar and keyboard shortcuts of the main window (they only call window/session)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QApplication, QComboBox, QLabel, QMenu, QMessageBox, QToolBar

from xnorlab.binary.modes import InputScaling, PadMode
from xnorlab.gui.dialogs import GettingStartedDialog
from xnorlab.gui.export_actions import add_export_actions
from xnorlab.gui.window_host import WindowHost

# actions that change layer configs: disabled while the session's modes are locked
MODE_ACTION_NAMES = (
    "undo", "redo", "all_xnor", "all_bwn", "all_float", "paper", "paper_bwn", "pattern",
    "selected_float", "selected_bwn", "selected_xnor",
)  # fmt: skip

SHORTCUTS_HELP = """<table>
<tr><td><b>Ctrl+O</b></td><td>open a model (demo, torchvision, checkpoint)</td></tr>
<tr><td><b>Ctrl+Shift+O</b></td><td>open a model file</td></tr>
<tr><td><b>Ctrl+D</b></td><td>open a dataset</td></tr>
<tr><td><b>Ctrl+I</b></td><td>open images to predict</td></tr>
<tr><td><b>Ctrl+E</b></td><td>export a report (HTML, JSON, CSV, Markdown)</td></tr>
<tr><td><b>Ctrl+Z / Ctrl+Shift+Z</b></td><td>undo / redo a mode change</td></tr>
<tr><td><b>Ctrl+1 / Ctrl+2 / Ctrl+3</b></td><td>selected layer: float / BWN / XNOR</td></tr>
<tr><td><b>Ctrl+Shift+X / B / F</b></td><td>all layers XNOR / BWN / float</td></tr>
<tr><td><b>Ctrl+P</b></td><td>paper preset (first and last layer float, others XNOR)</td></tr>
<tr><td><b>Ctrl+F</b></td><td>set the mode of layers matching a name pattern</td></tr>
<tr><td><b>Ctrl+M</b></td><td>measure each layer's sensitivity (binarize alone, restore alone)
</td></tr>
<tr><td><b>Ctrl+Shift+T</b></td><td>dark / light theme</td></tr>
<tr><td><b>F1</b></td><td>getting started</td></tr>
<tr><td><b>Ctrl+Q</b></td><td>quit</td></tr></table>
<p>Drop model files or images anywhere on the window.</p>"""


def _action(
    window: WindowHost, text: str, slot: Callable[..., Any], shortcut: str | None = None,
    tip: str = "",
) -> QAction:  # fmt: skip
    action = QAction(text, window)
    if shortcut:
        action.setShortcut(QKeySequence(shortcut))
    if tip:
        action.setStatusTip(tip)
        action.setToolTip(f"{tip} ({shortcut})" if shortcut else tip)
    action.triggered.connect(lambda _checked=False: slot())
    return action


def _set_selected(window: WindowHost, mode: str) -> None:
    s = window.session
    if s.selected is None:
        window.show_error("select a layer in the table first")
        return
    window.run_session(s.set_mode, s.selected, mode)


def _file_actions(window: WindowHost) -> dict[str, QAction]:
    return {
        "open_model": _action(window, "&Open model…", window.open_model_dialog, "Ctrl+O",
                              "Open a demo model, a torchvision architecture or a checkpoint"),
        "open_model_file": _action(window, "Open model &file…", window.open_model_file,
                                   "Ctrl+Shift+O", "Open a checkpoint file"),
        "open_data": _action(window, "Open &data…", window.open_data_dialog, "Ctrl+D",
                             "Open a dataset (mnist5k, digits, a folder, torchvision roots)"),
        "open_image": _action(window, "Open &image…", window.open_images_dialog, "Ctrl+I",
                              "Predict image files, float vs current configuration"),
        "quit": _action(window, "&Quit", window.close, "Ctrl+Q"),
    }  # fmt: skip


def _layer_actions(window: WindowHost) -> dict[str, QAction]:
    s = window.session

    def preset(name: str) -> Callable[[], Any]:
        return lambda: window.run_session(s.apply_preset, name)

    return {
        "undo": _action(window, "&Undo", lambda: window.run_session(s.undo), "Ctrl+Z",
                        "Undo the last mode change"),
        "redo": _action(window, "&Redo", lambda: window.run_session(s.redo), "Ctrl+Shift+Z",
                        "Redo the last undone mode change"),
        "all_xnor": _action(window, "All &XNOR", preset("xnor"), "Ctrl+Shift+X",
                            "Every layer XNOR (binary weights and inputs)"),
        "all_bwn": _action(window, "All &BWN", preset("bwn"), "Ctrl+Shift+B",
                           "Every layer BWN (binary weights)"),
        "all_float": _action(window, "All &float", preset("float"), "Ctrl+Shift+F",
                             "Every layer float"),
        "paper": _action(window, "&Paper preset", preset("paper"), "Ctrl+P",
                         "First and last layer float, every other layer XNOR"),
        "paper_bwn": _action(window, "Paper preset (BW&N)", preset("paper-bwn"), None,
                             "First and last layer float, every other layer BWN"),
        "pattern": _action(window, "By name &pattern…", window.ask_pattern, "Ctrl+F",
                           "Set the mode of every layer whose name matches a glob"),
        "selected_float": _action(window, "Selected layer: float",
                                  lambda: _set_selected(window, "float"), "Ctrl+1"),
        "selected_bwn": _action(window, "Selected layer: BWN",
                                lambda: _set_selected(window, "bwn"), "Ctrl+2"),
        "selected_xnor": _action(window, "Selected layer: XNOR",
                                 lambda: _set_selected(window, "xnor"), "Ctrl+3"),
        "sensitivity": _action(window, "Measure &sensitivity", window.measure_sensitivity,
                               "Ctrl+M", "Each layer's cost both ways, binarized alone and "
                               "restored alone, in the table (two evaluations per layer)"),
    }  # fmt: skip


def _setting_menu(
    window: WindowHost, menu: QMenu, title: str, field: str, values: list[str]
) -> list[QAction]:
    sub = menu.addMenu(title)
    actions = []
    for value in values:
        action = sub.addAction(value)
        action.triggered.connect(
            lambda _c=False, v=value: window.run_session(
                lambda: window.session.configure_layers(None, **{field: v})
            )
        )
        actions.append(action)
    return actions


def _help(window: WindowHost) -> None:
    QMessageBox.information(window, "Keyboard shortcuts", SHORTCUTS_HELP)


class _GettingStarted:
    """Help > Getting started: one non-modal page, so the user can follow it in the window."""

    def __init__(self, window: WindowHost) -> None:
        self.window = window
        self.dialog: GettingStartedDialog | None = None

    def show(self) -> GettingStartedDialog:
        if self.dialog is None:
            self.dialog = GettingStartedDialog(self.window)  # type: ignore[arg-type]
        self.dialog.show()
        self.dialog.raise_()
        return self.dialog


def _scaling_box(window: WindowHost) -> QComboBox:
    box = QComboBox(window)
    box.addItems([s.value for s in InputScaling])
    box.setToolTip("Input scaling of every XNOR layer: K map (paper), one beta per sample, none")

    def apply(index: int) -> None:
        window.run_session(
            lambda: window.session.configure_layers(None, scaling=box.itemText(index))
        )

    box.activated.connect(apply)
    return box


@dataclass(frozen=True)
class Menus:
    """What ``build_menus`` made that the window updates later."""

    actions: dict[str, QAction]  # by name: enabled, relabelled or checked by the window
    recent_menu: QMenu  # File > Recent models, refilled by the window
    scaling_box: QComboBox  # the toolbar's input scaling, synced to the layers by the window
    mode_actions: list[QAction]  # every action that changes layer configs (locked together)


def build_menus(window: WindowHost) -> Menus:
    """Create the menu bar, toolbar and shortcuts."""
    actions = {**_file_actions(window), **_layer_actions(window)}
    bar = window.menuBar()
    file_menu = bar.addMenu("&File")
    for key in ("open_model", "open_model_file", "open_data", "open_image"):
        file_menu.addAction(actions[key])
    recent_menu = file_menu.addMenu("Recent models")
    file_menu.addSeparator()
    actions.update(add_export_actions(window, file_menu))
    file_menu.addSeparator()
    file_menu.addAction(actions["quit"])
    edit = bar.addMenu("&Edit")
    edit.addActions([actions["undo"], actions["redo"]])
    layers = bar.addMenu("&Layers")
    for key in ("all_xnor", "all_bwn", "all_float", "paper", "paper_bwn", "pattern"):
        layers.addAction(actions[key])
    layers.addSeparator()
    layers.addActions(
        [actions["selected_float"], actions["selected_bwn"], actions["selected_xnor"]]
    )
    layers.addSeparator()
    layers.addAction(actions["sensitivity"])
    layers.addSeparator()
    settings = [
        *_setting_menu(window, layers, "Input scaling (all layers)", "scaling",
                       [s.value for s in InputScaling]),
        *_setting_menu(window, layers, "Binary padding (all layers)", "pad_mode",
                       [p.value for p in PadMode]),
        *_setting_menu(window, layers, "Inference backend (all layers)", "backend",
                       ["torch", "native"]),
    ]  # fmt: skip
    _view_menu(window, actions)
    _help_menu(window, actions)
    scaling_box = _toolbar(window, actions)
    mode_actions = [actions[name] for name in MODE_ACTION_NAMES] + settings
    return Menus(actions, recent_menu, scaling_box, mode_actions)


def _help_menu(window: WindowHost, actions: dict[str, QAction]) -> None:
    help_menu = window.menuBar().addMenu("&Help")
    page = _GettingStarted(window)
    actions["getting_started"] = _action(
        window, "&Getting started", page.show, "F1", "What each panel shows and what to try"
    )
    actions["shortcuts"] = _action(window, "Keyboard &shortcuts", lambda: _help(window))
    help_menu.addActions([actions["getting_started"], actions["shortcuts"]])
    help_menu.addSeparator()
    help_menu.addAction(_action(window, "About &Qt", QApplication.aboutQt))


def _view_menu(window: WindowHost, actions: dict[str, QAction]) -> None:
    view = window.menuBar().addMenu("&View")
    dark = _action(window, "&Dark theme", lambda: None, "Ctrl+Shift+T")
    dark.setCheckable(True)
    dark.toggled.connect(lambda on: window.set_theme("dark" if on else "light"))
    actions["dark"] = dark
    view.addAction(dark)
    view.addSeparator()
    for dock in window.docks.values():
        view.addAction(dock.toggleViewAction())
    view.addSeparator()
    view.addAction(_action(window, "Reset layout", window.reset_layout))


def _toolbar(window: WindowHost, actions: dict[str, QAction]) -> QComboBox:
    tools = QToolBar("Main toolbar", window)
    tools.setObjectName("toolbar-main")
    window.addToolBar(tools)
    tools.addAction(actions["open_model"])
    tools.addAction(actions["open_data"])
    tools.addSeparator()
    for key in ("undo", "redo"):
        # the menu says what would be undone; the button keeps one short label (its tooltip
        # says it) so the buttons beside it never move while the user aims at them
        actions[key].setIconText(key.capitalize())
        tools.addAction(actions[key])
    tools.addSeparator()
    for key in ("all_float", "all_bwn", "all_xnor", "paper", "pattern"):
        tools.addAction(actions[key])
    tools.addSeparator()
    tools.addWidget(QLabel(" scaling: "))
    scaling_box = _scaling_box(window)
    tools.addWidget(scaling_box)
    return scaling_box
