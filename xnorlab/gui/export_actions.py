"""File > Export report… and File > Export packed model (.xnor)… of the main window.

Both ask for a file with a save dialog, then work in a worker of the window's ``TaskRunner``
on a snapshot of the live model (``session.snapshot()``, taken on the GUI thread), so the
user's model, modes and undo history are never touched. Progress shows in a small bar in
the status bar (with a Cancel button for the report); success is a one-line status message
with the path, an error goes to the window's inline message bar (never a modal dialog).

The report measures the current mode map and per-layer settings on the open dataset (up to
``VALIDATION_LIMIT`` validation samples) or, without one, on the bundled calibration photos
(random inputs for models they cannot feed), then without accuracy. Accuracy sensitivity (one validation pass per layer) is an option of
the File menu; it is switched on for each newly opened model with at most
``SENSITIVITY_MAX_PARAMS`` parameters (demo models) and off for larger ones (resnet18).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMenu, QProgressBar, QToolButton
from torch import Tensor, nn
from torch.utils.data import Dataset

from xnorlab.common.errors import XnorlabError
from xnorlab.common.tasks import CancelFn, ProgressFn
from xnorlab.data.bundle import DatasetBundle
from xnorlab.gui.window_host import WindowHost
from xnorlab.gui.workers import Task
from xnorlab.lab.session import LabSession
from xnorlab.measure.front import SearchResult
from xnorlab.models.loaded import LoadedModel
from xnorlab.models.xnor_file import SUFFIX as XNOR_SUFFIX
from xnorlab.models.xnor_file import export_xnor
from xnorlab.report.build import ReportData, ReportOptions, build_report
from xnorlab.report.data import (
    default_calibration,
    report_data_from_bundle,
    stack_items,
    unlabelled_report_data,
)
from xnorlab.report.render import RENDERERS, write_report

SENSITIVITY_MAX_PARAMS = 5_000_000
VALIDATION_LIMIT = 1000
PROGRESS_STEPS = 1000
REPORT_KEY, XNOR_KEY = "export-report", "export-xnor"
# save-dialog filter -> suffix appended when the typed name has none
REPORT_FILTERS: dict[str, str] = {
    "HTML report (*.html)": ".html",
    "JSON (*.json)": ".json",
    "CSV, one row per layer (*.csv)": ".csv",
    "Markdown (*.md)": ".md",
}
XNOR_FILTER = "Packed model (*.xnor)"


def parameter_count(model: nn.Module) -> int:
    """Number of parameter elements of ``model``."""
    return sum(p.numel() for p in model.parameters())


def default_sensitivity(model: nn.Module) -> bool:
    """Whether a report on ``model`` includes accuracy sensitivity by default (small models)."""
    return parameter_count(model) <= SENSITIVITY_MAX_PARAMS


def with_suffix(path: str, selected_filter: str, filters: dict[str, str]) -> str:
    """``path`` with the suffix of ``selected_filter`` when it has none of ``filters``'."""
    if Path(path).suffix.lower() in {*filters.values(), *RENDERERS}:
        return path
    return path + filters.get(selected_filter, next(iter(filters.values())))


def _size(split: Dataset[tuple[Tensor, int]]) -> int:
    try:
        return len(split)  # type: ignore[arg-type]
    except TypeError:  # an iterable without a length cannot be sampled by index
        return 0


def weights_note(session: LabSession) -> str:
    """The report's note on weights changed in the app (e.g. fine-tuned in its modes)."""
    return (
        f"weights {session.weights_note} in the app after opening {session.model_name}: "
        "they differ from the file's"
    )


def report_data_for(loaded: LoadedModel, bundle: DatasetBundle | None) -> ReportData:
    """Calibration and validation tensors of the open dataset (without one: the bundled
    calibration photos, or random inputs where they cannot serve; no accuracy).

    Calibration comes from the train split, validation (accuracy) from the val split; an
    empty train split calibrates on validation samples, an empty val split gives a report
    without accuracy.
    """
    if bundle is None:
        return unlabelled_report_data(tuple(loaded.input_shape), loaded.preprocessing)
    train, val, name = bundle.train, bundle.val, bundle.name or "open dataset"
    if _size(train) and _size(val):
        return report_data_from_bundle(bundle, None, VALIDATION_LIMIT)
    count = default_calibration(tuple(loaded.input_shape))
    if _size(val):
        calibration, _ = stack_items(val, count)
        inputs, labels = stack_items(val, VALIDATION_LIMIT)
        return ReportData(f"{name} (val split)", calibration, inputs, labels)
    if _size(train):
        calibration, _ = stack_items(train, count)
        return ReportData(f"{name} (train split, no validation: no accuracy)", calibration)
    raise XnorlabError(f"dataset {name} has no samples: open another one to build a report")


def build_and_write_report(
    loaded: LoadedModel,
    bundle: DatasetBundle | None,
    path: str,
    options: ReportOptions,
    search: SearchResult | None = None,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
) -> Path:
    """Worker body of File > Export report: build the report on ``loaded`` and write ``path``.

    ``loaded.model`` must be a snapshot (``build_report`` copies it again); ``search``: the
    session's last search of this model, reported as its front. Raises ``Cancelled`` when
    ``should_cancel()`` turns true, ``XnorlabError`` on any other failure.
    """
    data = report_data_for(loaded, bundle)
    report = build_report(
        loaded, None, data, options=options, progress=progress, should_cancel=should_cancel,
        search=search,
    )  # fmt: skip
    return write_report(report, path)


def export_packed(model: nn.Module, path: str, loaded: LoadedModel) -> tuple[Path, int]:
    """Worker body of File > Export packed model: write ``model`` as ``path``; (path, bytes)."""
    return Path(path), export_xnor(model, path, loaded)


class ExportActions(QObject):
    """The two export actions of the main window and their status-bar progress widgets."""

    def __init__(self, window: WindowHost) -> None:
        super().__init__(window)
        self.window = window
        self.session = window.session
        self.report_action = self._action(
            "Export &report…",
            self.export_report,
            "Ctrl+E",
            "Write a per-layer report (HTML, JSON, CSV, Markdown)",
        )
        self.xnor_action = self._action(
            "Export packed model (.&xnor)…",
            self.export_xnor,
            None,
            "Write the binarized model as a compact .xnor file",
        )
        self.sensitivity_action = self._action(
            "Report: include accuracy &sensitivity", lambda: None, None,
            "One validation pass per layer (on by default for models up to 5M parameters)",
        )  # fmt: skip
        self.sensitivity_action.setCheckable(True)
        self.sensitivity_action.setChecked(True)
        self._build_progress()
        self.session.model_changed.connect(self._on_model_changed)
        self.destroyed.connect(lambda _obj=None, s=self.session: self._disconnect(s))
        self.last_task: Task | None = None

    # ------------------------------------------------------------------ construction
    def _action(self, text: str, slot: Any, shortcut: str | None, tip: str) -> QAction:
        action = QAction(text, self.window)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.setStatusTip(tip)
        action.triggered.connect(lambda _checked=False: slot())
        return action

    def _build_progress(self) -> None:
        bar = self.window.statusBar()
        self.progress_bar = QProgressBar(bar)
        self.progress_bar.setMaximumWidth(180)
        self.cancel_button = QToolButton(bar)
        self.cancel_button.setText("Cancel")
        self.cancel_button.setToolTip("Stop building the report (no file is written)")
        self.cancel_button.clicked.connect(self.cancel)
        for widget in (self.progress_bar, self.cancel_button):
            bar.addPermanentWidget(widget)
            widget.hide()

    def _on_model_changed(self) -> None:
        if self.session.loaded is not None:
            self.sensitivity_action.setChecked(default_sensitivity(self.session.model))

    def _disconnect(self, session: LabSession) -> None:
        session.model_changed.disconnect(self._on_model_changed)  # unknown slots are ignored

    def menu_actions(self) -> dict[str, QAction]:
        """The actions by name, for ``build_menus``."""
        return {
            "export_report": self.report_action,
            "export_xnor": self.xnor_action,
            "report_sensitivity": self.sensitivity_action,
        }

    # ------------------------------------------------------------------ the actions
    def _ask_path(self, title: str, filters: dict[str, str], default_name: str) -> str | None:
        path, selected = QFileDialog.getSaveFileName(
            self.window, title, default_name, ";;".join(filters)
        )
        return with_suffix(path, selected, filters) if path else None

    def _snapshot(self) -> LoadedModel | None:
        """The open model with a weight-sharing copy of its module tree (None: error shown)."""
        loaded = self.session.loaded
        if loaded is None:
            self.window.show_error("open a model first: there is nothing to export")
            return None
        # the display name: weights fine-tuned in the app are not the file's any more
        return dataclasses.replace(
            loaded, spec=self.session.display_name, model=self.session.snapshot().eval()
        )

    def _stem(self) -> str:
        name = self.session.model_name.replace(":", "_") or "model"
        return Path(name).stem or "model"

    def export_report(self, path: str | None = None) -> Task | None:
        """File > Export report…: ask for a file (unless ``path``), build and write in a worker."""
        if self.session.loaded is None:
            self.window.show_error("open a model first: there is nothing to report")
            return None
        path = path or self._ask_path("Export report", REPORT_FILTERS, f"{self._stem()}-report")
        loaded = self._snapshot() if path else None
        if path is None or loaded is None:
            return None
        notes = (weights_note(self.session),) if self.session.weights_note else ()
        options = ReportOptions(sensitivity=self.sensitivity_action.isChecked(), extra_notes=notes)
        return self._start(
            REPORT_KEY, "report", build_and_write_report, loaded, self.session.dataset, path,
            options, self.session.last_search, cancellable=True,
            on_result=lambda written: self._done(f"report written to {written}"),
        )  # fmt: skip

    def export_xnor(self, path: str | None = None) -> Task | None:
        """File > Export packed model (.xnor)…: ask for a file, export in a worker."""
        if self.session.loaded is None:
            self.window.show_error("open a model first: there is nothing to export")
            return None
        path = path or self._ask_path("Export packed model", {XNOR_FILTER: XNOR_SUFFIX},
                                      f"{self._stem()}{XNOR_SUFFIX}")  # fmt: skip
        loaded = self._snapshot() if path else None
        if path is None or loaded is None:
            return None
        return self._start(
            XNOR_KEY, "packed model", export_packed, loaded.model, path, loaded,
            on_result=lambda result: self._done(
                f"packed model written to {result[0]} ({result[1] / 1024:.1f} KiB)"
            ),
            cancellable=False,
        )  # fmt: skip

    def _start(
        self, key: str, what: str, func: Any, *args: Any, on_result: Any, cancellable: bool
    ) -> Task:
        """Run ``func`` in the window's runner; ``cancellable``: it polls ``should_cancel``
        and reports progress (the report), else the bar only shows "busy" (the quick export)."""
        self.window.message_bar.clear()
        self.window.statusBar().showMessage(f"exporting {what}…")
        self.progress_bar.setRange(0, PROGRESS_STEPS if cancellable else 0)
        self.progress_bar.setValue(0)
        self.progress_bar.show()
        self.cancel_button.setVisible(cancellable)
        self.last_task = self.window.runner.start(
            func, *args, key=key, on_result=on_result,
            on_error=lambda message: self._failed(what, message),
            on_progress=self._progress, on_finished=self._idle,
            on_cancelled=lambda: self._done(f"{what} export cancelled"),
        )  # fmt: skip
        return self.last_task

    # ------------------------------------------------------------------ task callbacks
    def _progress(self, fraction: float, message: str, _payload: object = None) -> None:
        self.progress_bar.setRange(0, PROGRESS_STEPS)
        self.progress_bar.setValue(int(PROGRESS_STEPS * fraction))
        if message:
            self.window.statusBar().showMessage(f"report: {message}…")

    def _idle(self) -> None:
        if not (self.window.runner.running(REPORT_KEY) or self.window.runner.running(XNOR_KEY)):
            self.progress_bar.hide()
            self.cancel_button.hide()

    def _done(self, message: str) -> None:
        self.window.statusBar().showMessage(message, 15000)

    def _failed(self, what: str, message: str) -> None:
        self.window.show_error(f"{what} not exported: {message}")

    def cancel(self) -> None:
        """Cancel the running report (the Cancel button of the status bar); the .xnor export
        is one quick atomic write and is not cancelled."""
        task = self.window.runner.running(REPORT_KEY)
        if task is not None:
            task.cancel()


def add_export_actions(window: WindowHost, menu: QMenu) -> dict[str, QAction]:
    """Create the window's ``ExportActions``, add them to ``menu``; return them by name."""
    exports = ExportActions(window)
    actions = exports.menu_actions()
    menu.addAction(actions["export_report"])
    menu.addAction(actions["report_sensitivity"])
    menu.addAction(actions["export_xnor"])
    return actions


def exports_of(window: QObject) -> ExportActions:
    """The ``ExportActions`` of the main window ``window`` (created by ``build_menus``)."""
    exports = window.findChild(ExportActions)
    if exports is None:
        raise XnorlabError("the window has no export actions")
    return exports
