"""The main window: layer table in the centre, layer views and the panels in docks.

The window owns one ``LabSession``. Menus and the toolbar only call session methods; the table,
views and panels redraw from the session's events. Errors (``session.error``) show in an inline
message bar and the status bar, never in a traceback dialog. Dropped files are turned into
paths and handed to ``session.open_paths`` (model files open the model, images go to the
prediction panel). Window layout, theme, last model and recent models live in ``QSettings``.
The status bar names the data; without a dataset it says when the views run on the bundled
calibration photos instead. Its left part is never blank: between short messages it shows how
many layers are in each mode and the last change (or why modes are locked).

While the session's modes are locked (a training run, a search), every action that changes layer
configs, the scaling box and the table's combos are disabled, and the status bar says why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer, QUrl
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QShowEvent
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QVBoxLayout,
    QWidget,
)

from xnorlab import engine
from xnorlab.binary.modes import Mode
from xnorlab.gui import style
from xnorlab.gui.dialogs import PatternDialog
from xnorlab.gui.hint_bar import HintBar
from xnorlab.gui.layer_table import LayerTable
from xnorlab.gui.menus import build_menus
from xnorlab.gui.message_bar import MessageBar
from xnorlab.gui.panels.formatting import mode_counts
from xnorlab.gui.panels.metrics import MetricsPanel
from xnorlab.gui.panels.open_dialogs import (
    load_or_classify,
    open_data_dialog,
    open_model_dialog,
    opener_for,
)
from xnorlab.gui.panels.prediction import IMAGE_FILTER, PredictionPanel
from xnorlab.gui.panels.search import SearchPanel
from xnorlab.gui.panels.training import TrainingPanel
from xnorlab.gui.views import LayerViews
from xnorlab.gui.workers import TaskRunner
from xnorlab.lab.session import InputKind, LabSession, load_dataset_for
from xnorlab.models.ensemble import members_line
from xnorlab.models.spec import code_spec_of

log = logging.getLogger(__name__)

MAX_RECENT = 8
MIN_TABLE_ROWS = 4  # the table never shrinks below this many rows...
MAX_TABLE_SHARE = 0.5  # ...nor grows above this share of the window's height when fitted
Panel = MetricsPanel | PredictionPanel | TrainingPanel | SearchPanel
# key, class, dock title; tabbed in this order on the right, the first one in front
PANELS: tuple[tuple[str, type[Panel], str], ...] = (
    ("metrics", MetricsPanel, "Metrics"),
    ("prediction", PredictionPanel, "Prediction"),
    ("training", TrainingPanel, "Training"),
    ("search", SearchPanel, "Search"),
)
MODEL_FILTER = "Models (*.pt *.pth *.safetensors *.ts *.xnor);;All files (*)"
CALIBRATION_TIP = (
    "No dataset is open: the layer views and the table's error columns run on real photos "
    "shipped with xnorlab (unlabelled, so no accuracy). Open a dataset (Ctrl+D) to use it instead."
)


def settings() -> QSettings:
    """The application's settings store: an INI file, organisation and application "xnorlab"
    (tests move it with ``QSettings.setPath(IniFormat, UserScope, folder)``)."""
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "xnorlab", "xnorlab")


def local_paths(urls: list[QUrl]) -> list[str]:
    """Local file paths of dropped URLs (non-local URLs are skipped)."""
    return [url.toLocalFile() for url in urls if url.isLocalFile()]


def engine_text() -> tuple[str, str]:
    """Status-bar texts for the XNOR engine (backend and ISA) and its thread count."""
    info = engine.info()
    return f"engine: {info['backend']} {info['isa']}", f"threads: {info['threads']}"


class MainWindow(QMainWindow):
    """The xnorlab desktop window."""

    def __init__(
        self, session: LabSession | None = None, parent: QWidget | None = None,
        panels: bool = True,
    ) -> None:  # fmt: skip
        super().__init__(parent)
        self.with_panels = panels
        # False for a window that must leave the user's settings as they were (the
        # screenshot mode): no last model, recent list or window layout is stored.
        self.remembers = True
        self._shown_once = False
        self.session = session or LabSession()
        self.setWindowTitle("xnorlab")
        self.setAcceptDrops(True)
        self.setDockOptions(
            QMainWindow.DockOption.AnimatedDocks | QMainWindow.DockOption.AllowTabbedDocks
        )
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        self.setCorner(Qt.Corner.TopRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        self.runner = TaskRunner(self)
        self.panels: dict[str, Panel] = {}
        self._build_central()
        self._build_docks()
        self._build_status()
        menus = build_menus(self)
        self.actions_by_name: dict[str, QAction] = menus.actions
        self.mode_actions: list[QAction] = menus.mode_actions
        self.recent_menu: QMenu = menus.recent_menu
        self.scaling_box: QComboBox = menus.scaling_box
        self.hint.setVisible(not settings().value("hint_done", False, type=bool))
        self.fill_recent_menu()
        self._connect_session()
        self._default_state = self.saveState()
        self.restore_layout()
        self._update_actions()

    # ------------------------------------------------------------------ construction
    def _build_central(self) -> None:
        central = QWidget(self)
        layout = QVBoxLayout(central)
        layout.setContentsMargins(2, 2, 2, 2)
        self.message_bar = MessageBar(central)
        self.table = LayerTable(self.session, central)
        self.hint = HintBar(lambda: self.actions_by_name["getting_started"].trigger(), central)
        self.hint.close_button.clicked.connect(self.retire_hint)
        layout.addWidget(self.message_bar)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.hint)
        self.setCentralWidget(central)

    def _dock(self, key: str, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock-{key}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_docks(self) -> None:
        self.views = LayerViews(self.session, self)
        self.table.defer = self.views.busy
        self.docks = {
            "views": self._dock(
                "views", "Layer views", self.views, Qt.DockWidgetArea.BottomDockWidgetArea
            )
        }
        first: QDockWidget | None = None
        for key, panel_class, title in PANELS if self.with_panels else ():
            panel = self.panels[key] = panel_class(self.session, self)
            dock = self._dock(key, title, panel, Qt.DockWidgetArea.RightDockWidgetArea)
            self.docks[key] = dock
            if first is None:
                first = dock
            else:
                self.tabifyDockWidget(first, dock)
        if first is not None:
            first.raise_()

    def _build_status(self) -> None:
        bar = self.statusBar()
        self.state_label = QLabel()  # shown whenever no short message is (never a blank bar)
        bar.addWidget(self.state_label, 1)
        engine, threads = engine_text()
        self.model_label, self.data_label = QLabel("model: -"), QLabel("data: -")
        self.engine_label, self.threads_label = QLabel(engine), QLabel(threads)
        for label in (self.model_label, self.data_label, self.engine_label, self.threads_label):
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            bar.addPermanentWidget(label)

    def _connect_session(self) -> None:
        s = self.session
        s.error.connect(self.show_error)
        s.model_changed.connect(self._on_model_changed)
        s.data_changed.connect(self._update_status)
        s.modes_changed.connect(self._on_modes_changed)
        s.weights_changed.connect(self._update_status)
        s.lock_changed.connect(self._on_lock_changed)
        s.dataset_requested.connect(self.load_dataset_async)
        s.model_requested.connect(self.open_model_async)
        self.table.busy_changed.connect(lambda _busy: self._update_status())
        self.table.height_changed.connect(lambda: QTimer.singleShot(0, self, self.fit_table))

    # ------------------------------------------------------------------ session events
    def show_error(self, message: str) -> None:
        """Show a user-facing error inline and in the status bar."""
        self.message_bar.show_message(message)
        self.statusBar().showMessage(message, 10000)

    def _on_model_changed(self) -> None:
        names = [info.name for info in self.session.layers()]
        binarized = [info.name for info in self.session.layers() if info.mode is not Mode.FLOAT]
        default = binarized[0] if binarized else (names[1] if len(names) > 1 else None)
        if default is None and names:
            default = names[0]
        self.session.attempt(self.session.select, default)
        self._update_status()
        self._update_actions()
        self.remember_model(self.session.model_name)
        QTimer.singleShot(0, self, self.fit_table)  # after the table laid out its new rows

    def _on_modes_changed(self, _names: list[str]) -> None:
        self._update_actions()
        if self.session.can_undo and not self.hint.isHidden():
            self.retire_hint()  # the user found the modes: the hint has done its job
        s = self.session
        undo = f" · Ctrl+Z: undo {s.undo_label}" if s.can_undo else ""
        self.statusBar().showMessage(f"{s.last_change}{undo}", 4000)

    def _on_lock_changed(self, reason: str) -> None:
        self.scaling_box.setEnabled(not reason)
        self._update_actions()
        if reason:
            self.statusBar().showMessage(f"modes locked: {reason}", 8000)
        else:
            self.statusBar().showMessage("modes unlocked", 3000)

    def retire_hint(self) -> None:
        """Hide the first-steps hint for good (remembered in the settings)."""
        self.hint.hide()
        settings().setValue("hint_done", True)
        QTimer.singleShot(0, self, self.fit_table)

    def _update_status(self) -> None:
        s = self.session
        loaded = s.loaded
        name = s.display_name or "-"
        members = members_line(loaded.model, loaded.card, short=True) if loaded else None
        self.model_label.setText(f"model: {name}" + (f" · {members}" if members else ""))
        if loaded is not None:
            count = len(s.layers())
            detail = members_line(loaded.model, loaded.card)
            self.model_label.setToolTip(
                f"{name}: {count} binarizable layers, input {loaded.input_shape}"
                + (f"\n{detail}" if detail else "")
            )
        data = s.dataset_spec or "-"
        self._update_data_label(data)
        if s.dataset is not None and self.statusBar().currentMessage().startswith("loading data"):
            self.statusBar().showMessage(f"data {data} loaded", 3000)
        if s.loaded is not None and self.statusBar().currentMessage().startswith("opening"):
            self.statusBar().showMessage(f"opened {name}", 3000)
        self.setWindowTitle(f"xnorlab - {name}" if s.loaded is not None else "xnorlab")

    def _update_data_label(self, data: str) -> None:
        s = self.session
        inputs = s.activation_inputs() if s.dataset is None and s.loaded is not None else None
        if inputs is not None and inputs.kind is InputKind.CALIBRATION:
            self.data_label.setText(f"data: {data} (views: {inputs.description})")
            self.data_label.setToolTip(CALIBRATION_TIP)
        else:
            self.data_label.setText(f"data: {data}")
            self.data_label.setToolTip("")

    def _sync_scaling_box(self) -> None:
        """Show the input scaling shared by every layer (blank when they differ)."""
        box, s = self.scaling_box, self.session
        values = {config.scaling.value for config in s.configs().values()}
        box.setCurrentIndex(box.findText(values.pop()) if len(values) == 1 else -1)  # -1: mixed

    def _update_actions(self) -> None:
        self._sync_scaling_box()
        actions, s = self.actions_by_name, self.session
        for action in self.mode_actions:
            action.setEnabled(not s.modes_locked)
        actions["undo"].setEnabled(s.can_undo and not s.modes_locked)
        actions["redo"].setEnabled(s.can_redo and not s.modes_locked)
        actions["undo"].setText(f"&Undo {s.undo_label}" if s.can_undo else "&Undo")
        actions["redo"].setText(f"&Redo {s.redo_label}" if s.can_redo else "&Redo")
        for key, label in (("undo", s.undo_label), ("redo", s.redo_label)):
            shortcut = actions[key].shortcut().toString()
            what = f"{key.capitalize()} {label}" if label else f"Nothing to {key}"
            actions[key].setToolTip(f"{what} ({shortcut})")
        self.state_label.setText(self.state_text())

    def state_text(self) -> str:
        """The status bar's resting text: layers per mode and the last change, or the lock."""
        s = self.session
        if s.loaded is None:
            return "no model open: File > Open model (Ctrl+O), or Help > Getting started (F1)"
        modes = mode_counts(info.mode for info in s.layers())
        if s.modes_locked:
            return f"{modes} · modes locked: {s.lock_reason}"
        last = f" · last change: {s.undo_label} (Ctrl+Z)" if s.can_undo else ""
        return f"{modes}{last}"

    # ------------------------------------------------------------------ opening
    def open_model_async(self, spec: str, trust: bool = False) -> None:
        """Load ``spec`` in a worker (the window's ``Opener``, which asks before trusting)."""
        self.statusBar().showMessage(f"opening {spec}…")
        opener_for(self.session, self).open_model(spec, trust=trust)

    def open_initial(self, spec: str | None, default: str, restore_last: bool = True) -> None:
        """Open ``spec``; without one, the last model of the previous session (if
        ``restore_last``), falling back to ``default`` when that one cannot be opened."""
        if spec:
            self.open_model_async(spec)
            return
        last = str(settings().value("last_model", "") or "") if restore_last else ""
        if not last or last == default:
            self.open_model_async(default)
            return

        def fall_back(message: str) -> None:
            self.show_error(f"could not reopen the last model {last!r}: {message}")
            self.open_model_async(default)

        self.statusBar().showMessage(f"opening {last}…")
        self.runner.start(
            load_or_classify, last, key="open-model", on_error=fall_back,
            on_result=opener_for(self.session, self).take,
        )  # fmt: skip

    def load_dataset_async(self, spec: str) -> None:
        """Load dataset ``spec`` for the open model in a worker, then make it current."""
        self.statusBar().showMessage(f"loading data {spec}…")
        self.runner.start(
            load_dataset_for, spec, self.session.loaded, key="open-data",
            on_result=lambda bundle: self.session.attempt(self.session.set_dataset, bundle, spec),
            on_error=self.show_error,
        )  # fmt: skip

    def open_model_dialog(self) -> None:
        """File > Open model…"""
        open_model_dialog(self.session, self)

    def open_model_file(self) -> None:
        """File > Open model file…"""
        path, _ = QFileDialog.getOpenFileName(self, "Open model file", "", MODEL_FILTER)
        if path:
            self.open_model_async(path)

    def open_data_dialog(self) -> None:
        """File > Open data…"""
        open_data_dialog(self.session, self)

    def open_images_dialog(self) -> None:
        """File > Open image…: the chosen images go to the prediction panel."""
        paths, _ = QFileDialog.getOpenFileNames(self, "Open images", "", IMAGE_FILTER)
        if paths:
            self.session.attempt(self.session.open_paths, paths)

    # ------------------------------------------------------------------ layer actions
    def run_session(self, func: Callable[..., Any], *args: Any) -> Any:
        """Call a session method; an XnorlabError is shown, never raised."""
        result = self.session.attempt(func, *args)
        self._update_actions()
        return result

    def ask_pattern(self) -> None:
        """Layers > By name pattern…: ask a glob and a mode, apply them."""
        choice = PatternDialog(self.session.layer_names(), self).choice()
        if choice is not None:
            self.run_session(self.session.apply_pattern, *choice)

    def measure_sensitivity(self) -> None:
        """Layers > Measure sensitivity: each layer's cost both ways, in the table (a worker)."""
        if self.table.start_sensitivity() is not None:
            self.statusBar().showMessage("measuring each layer's sensitivity…", 4000)

    # ------------------------------------------------------------------ drag and drop
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and local_paths(event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = local_paths(event.mimeData().urls()) if event.mimeData().hasUrls() else []
        if not paths:
            self.show_error("nothing to open: drop local model or image files")
            event.ignore()
            return
        event.acceptProposedAction()
        self.message_bar.clear()
        self.session.attempt(self.session.open_paths, paths)

    # ------------------------------------------------------------------ settings
    def remember_model(self, spec: str) -> None:
        """Store ``spec`` as the last model and at the top of the recent list."""
        if not spec or not self.remembers:
            return
        store = settings()
        recent = [r for r in self.recent_models() if r != spec]
        store.setValue("recent_models", [spec, *recent][:MAX_RECENT])
        # A FILE.py:Class spec runs the user's code: it is opened again only when the user
        # picks it (recent list), never by itself at the next start.
        if code_spec_of(spec) is None:
            store.setValue("last_model", spec)
        self.fill_recent_menu()

    @staticmethod
    def recent_models() -> list[str]:
        value = settings().value("recent_models", [])
        if isinstance(value, str):
            return [value]
        return [str(v) for v in value] if isinstance(value, list) else []

    def fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for spec in self.recent_models():
            action = self.recent_menu.addAction(spec)
            action.triggered.connect(lambda _checked=False, s=spec: self.open_model_async(s))
        self.recent_menu.setEnabled(bool(self.recent_models()))

    def restore_layout(self) -> None:
        store = settings()
        geometry, state = store.value("geometry"), store.value("window_state")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        else:
            self.resize(1500, 940)
        if isinstance(state, QByteArray):
            self.restoreState(state)
        else:
            QTimer.singleShot(0, self, self.default_dock_sizes)  # dropped if self is deleted
        self.set_theme(str(store.value("theme", "light")), save=False)

    def reset_layout(self) -> None:
        """View > Reset layout."""
        self.restoreState(self._default_state)
        for dock in self.docks.values():
            dock.show()
        self.default_dock_sizes()

    def default_dock_sizes(self) -> None:
        """Give the table most of the width and the layer views about half the height, then
        fit the table to its rows."""
        right = [d for key, d in self.docks.items() if key != "views"]
        if right:
            width = max(360, int(0.27 * self.width()))
            self.resizeDocks(right[:1], [width], Qt.Orientation.Horizontal)
        views = self.docks["views"]
        self.resizeDocks([views], [max(300, self.height() // 2)], Qt.Orientation.Vertical)
        self.fit_table()

    def fit_table(self) -> None:
        """Give the layer views the height the table does not need: the table shows all its
        rows, at least ``MIN_TABLE_ROWS`` and at most ``MAX_TABLE_SHARE`` of the window."""
        views = self.docks["views"]
        if views.isFloating() or not views.isVisible() or self.centralWidget() is None:
            return
        central = self.centralWidget()
        rows = max(MIN_TABLE_ROWS, self.table.model.rowCount())
        others = central.height() - self.table.height()  # message bar, hint, margins
        wanted = min(self.table.rows_height(rows), int(MAX_TABLE_SHARE * self.height()))
        spare = central.height() - others - wanted
        if spare != 0:
            self.resizeDocks([views], [views.height() + spare], Qt.Orientation.Vertical)

    def set_theme(self, name: str, save: bool = True) -> None:
        """Switch to the light or dark palette; existing plots are redrawn."""
        app = QApplication.instance()
        if name not in style.THEMES or not isinstance(app, QApplication):
            return
        style.apply_theme(app, name)
        for graphics in self.findChildren(pg.GraphicsView):  # our plots and the panels' charts
            graphics.setBackground(style.theme().plot_bg)
            if isinstance(graphics, pg.PlotWidget):
                style.style_plot(graphics)
        self.message_bar.restyle()
        self.views.redraw()
        for panel in self.panels.values():
            panel.restyle()
        self.actions_by_name["dark"].setChecked(name == "dark")
        if save:
            settings().setValue("theme", name)

    def busy(self) -> bool:
        """True while anything is loading or computing (the screenshot waits for False)."""
        if self.runner.active or self.table.busy() or self.views.busy():
            return True
        return any(panel.busy() for panel in self.panels.values())

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self._shown_once:  # tabs exist only now: put the first panel (metrics) in front
            self._shown_once = True
            right = [d for key, d in self.docks.items() if key != "views"]
            if right:
                right[0].raise_()

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.remembers:
            store = settings()
            store.setValue("geometry", self.saveGeometry())
            store.setValue("window_state", self.saveState())
        self.table.shutdown()
        self.views.shutdown()
        for panel in self.panels.values():
            try:
                panel.shutdown()
            except Exception as exc:  # one failing panel must not keep the window from closing
                log.warning("panel shutdown failed: %s", exc)
        self.runner.cancel_all()
        super().closeEvent(event)

    def flash(self, text: str, ms: int = 4000) -> None:
        """A short status-bar message."""
        self.statusBar().showMessage(text, ms)
        QTimer.singleShot(0, self, self._update_actions)
