"""What the menus and the export actions need from the main window, as a ``Protocol``.

``menus`` and ``export_actions`` are built by ``main_window`` and call back into it; typing them
against this protocol instead of ``MainWindow`` keeps the imports one-way (main_window ->
menus -> export_actions -> window_host). ``MainWindow`` (a ``QMainWindow``) implements it, and
is also the Qt parent of the actions, dialogs and toolbar they create.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from PySide6.QtWidgets import QDockWidget, QMenuBar, QStatusBar, QToolBar

from xnorlab.gui.message_bar import MessageBar
from xnorlab.gui.workers import TaskRunner
from xnorlab.lab.session import LabSession


class WindowHost(Protocol):
    """The main window as its menus, toolbar and export actions see it."""

    session: LabSession
    runner: TaskRunner  # workers of window-level jobs (open, export)
    message_bar: MessageBar
    docks: dict[str, QDockWidget]  # key -> dock; the View menu toggles each

    # QMainWindow's own methods the menus use
    def menuBar(self) -> QMenuBar: ...
    def statusBar(self) -> QStatusBar: ...
    def addToolBar(self, toolbar: QToolBar, /) -> None: ...
    def close(self) -> bool: ...

    def show_error(self, message: str) -> None:
        """Show a user-facing error inline and in the status bar."""
        ...

    def run_session(self, func: Callable[..., Any], *args: Any) -> Any:
        """Call a session method; an ``XnorlabError`` is shown, never raised."""
        ...

    def open_model_dialog(self) -> None: ...
    def open_model_file(self) -> None: ...
    def open_data_dialog(self) -> None: ...
    def open_images_dialog(self) -> None: ...
    def ask_pattern(self) -> None: ...
    def measure_sensitivity(self) -> None: ...
    def set_theme(self, name: str, save: bool = True) -> None: ...
    def reset_layout(self) -> None: ...
