"""Prediction panel: drop image files (or open them) and compare top-k, float vs current modes.

Drops are turned into paths and handed to ``LabSession.open_paths`` (a model file opens the
model; images come back through ``session.images_dropped``, also fired by drops on the main
window). Decoding and both forward passes run in a worker on a snapshot of the model. Each card
says which preprocessing made its input (``xnorlab.data.images.prepare_image``'s steps: "taken
as it is" for an image already in the model's size and mode, else e.g. grayscale, inverted,
digit layout, resize). A corrupt or unsupported file shows a message here and leaves the shown
predictions unchanged.
After a change of modes, weights or model the same images are predicted again.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QMimeData, Qt, QTimer
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QImage, QPixmap
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from xnorlab.common.errors import XnorlabError
from xnorlab.data.images import IMAGE_SUFFIXES
from xnorlab.gui import style
from xnorlab.gui.panels.base import show_message, subscribe
from xnorlab.gui.workers import Task, TaskRunner
from xnorlab.lab.session import LabSession
from xnorlab.measure.predictions import FilePrediction, TopK, predict_files

THUMBNAIL_PX = 112
BAR_CHARS = 8  # width of a 100 % probability bar
LABEL_CHARS = 22  # class names are cut to this length in the cards (full names in the tooltip)
DEBOUNCE_MS = 150
IMAGE_FILTER = "Images (" + " ".join(f"*{s}" for s in IMAGE_SUFFIXES) + ");;All files (*)"


def mime_paths(mime: QMimeData) -> list[str]:
    """Local file paths of a drag's URLs (non-file URLs are ignored)."""
    if not mime.hasUrls():
        return []
    return [url.toLocalFile() for url in mime.urls() if url.isLocalFile()]


def input_pixmap(model_input: Any, preprocessing: Any, size_px: int = THUMBNAIL_PX) -> QPixmap:
    """The normalized ``(C, H, W)`` model input as a picture (denormalized, pixels visible)."""
    pixels = preprocessing.denormalize(model_input).clamp(0, 1)
    array = np.ascontiguousarray((pixels.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    height, width, channels = array.shape
    if channels == 1:
        image = QImage(array.data, width, height, width, QImage.Format.Format_Grayscale8)
    else:
        image = QImage(array.data, width, height, 3 * width, QImage.Format.Format_RGB888)
    scaled = image.copy().scaled(
        size_px, size_px, Qt.AspectRatioMode.KeepAspectRatio,
        Qt.TransformationMode.FastTransformation,
    )  # fmt: skip
    return QPixmap.fromImage(scaled)


def _short(label: str, chars: int = LABEL_CHARS) -> str:
    """``label`` cut to ``chars`` characters with an ellipsis (the panel is a narrow dock)."""
    return label if len(label) <= chars else label[: chars - 1].rstrip() + "…"


def topk_html(title: str, topk: TopK, highlight: str | None = None) -> str:
    """An HTML table: class, probability and a bar; ``highlight`` marks a differing top-1."""
    rows = []
    for rank, (label, prob) in enumerate(zip(topk.labels, topk.probabilities, strict=True)):
        bar = "█" * max(1, round(prob * BAR_CHARS)) if prob >= 0.005 else ""
        style = f' style="color:{highlight}"' if rank == 0 and highlight else ""
        name = escape(_short(str(label)))
        rows.append(
            f"<tr><td{style}>{'<b>' if rank == 0 else ''}{name}</td>"
            f"<td align='right'>{100 * prob:.1f}%</td><td>{bar}</td></tr>"
        )
    return f"<b>{title}</b><table cellspacing='2'>{''.join(rows)}</table>"


def topk_tooltip(topk: TopK) -> str:
    """The full class names of ``topk`` with their probabilities, one per line."""
    pairs = zip(topk.labels, topk.probabilities, strict=True)
    return "\n".join(f"{100 * prob:.1f}%  {label}" for label, prob in pairs)


NORMALIZE_STEP = "normalized"  # every input ends with it: the card leaves it to the tooltip


def steps_text(steps: tuple[str, ...]) -> str:
    """``prepared: grayscale, inverted (light background), ...``: the steps that shaped the
    image, without the normalization every input gets."""
    shown = [step for step in steps if not step.startswith(NORMALIZE_STEP)] or list(steps)
    return "prepared: " + ", ".join(shown) if shown else ""


def top1_differs(result: FilePrediction) -> bool:
    """Whether the float model and the current modes disagree on the image's top-1 class."""
    return bool(result.pair.float_topk.indices[0] != result.pair.current_topk.indices[0])


def agreement_sentence(results: list[FilePrediction]) -> str:
    """How often float and the current modes give the same top-1 class, as a sentence."""
    count, differing = len(results), sum(top1_differs(r) for r in results)
    if count == 1:
        return "float and current " + ("differ on the image" if differing else "agree")
    if differing:
        return f"float and current differ on {differing} of {count} images"
    return f"float and current agree on all {count} images"


class PredictionRow(QFrame):
    """One image: the model input beside the float top-k and, under it, the current top-k.

    Stacked (not three columns side by side) so a card fits the narrow right-hand dock.
    """

    def __init__(self, result: FilePrediction, preprocessing: Any) -> None:
        super().__init__()
        self.result = result
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.picture = QLabel()
        self.picture.setPixmap(input_pixmap(result.model_input, preprocessing))
        self.picture.setToolTip(result.path)
        name = QLabel(Path(result.path).name)
        name.setToolTip(result.path)
        self.steps_label = QLabel(steps_text(result.steps))
        self.steps_label.setWordWrap(True)
        self.steps_label.setToolTip("\n".join(result.steps))
        style.set_tone(self.steps_label, style.Tone.MUTED)
        pair = result.pair
        self.float_label = QLabel(topk_html("float", pair.float_topk))
        self.float_label.setToolTip(topk_tooltip(pair.float_topk))
        self.current_label = QLabel()
        self.current_label.setToolTip(topk_tooltip(pair.current_topk))
        self.restyle()
        grid = QGridLayout(self)
        grid.addWidget(self.picture, 0, 0, 2, 1, Qt.AlignmentFlag.AlignTop)
        grid.addWidget(self.float_label, 0, 1, Qt.AlignmentFlag.AlignTop)
        grid.addWidget(self.current_label, 1, 1, Qt.AlignmentFlag.AlignTop)
        grid.addWidget(name, 2, 0, 1, 2)
        grid.addWidget(self.steps_label, 3, 0, 1, 2)
        grid.setColumnStretch(1, 1)

    def restyle(self) -> None:
        """Draw the differing top-1 in the current theme's error colour."""
        highlight = style.theme().error_fg if top1_differs(self.result) else None
        self.current_label.setText(
            topk_html("current modes", self.result.pair.current_topk, highlight)
        )


class PredictionPanel(QWidget):
    """Drop images here (or on the window) to see top-k, float vs the current configuration."""

    def __init__(self, session: LabSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.runner = TaskRunner(self)
        self.paths: list[str] = []
        self.results: list[FilePrediction] = []
        self.task: Task | None = None
        self.setAcceptDrops(True)
        self._build()
        self._rerun = QTimer(self, singleShot=True, interval=DEBOUNCE_MS)
        self._rerun.timeout.connect(self._predict_again)
        subscribe(self, [
            (session.images_dropped, self.show_images),
            (session.modes_changed, lambda _names: self._rerun.start()),
            (session.model_changed, self._rerun.start),
            (session.weights_changed, self._rerun.start),
        ])  # fmt: skip

    def _build(self) -> None:
        self.open_button = QPushButton("Open image…")
        self.open_button.clicked.connect(self.open_images)
        self.topk_spin = QSpinBox(minimum=1, maximum=20, value=5, prefix="top-")
        self.topk_spin.valueChanged.connect(lambda _v: self._rerun.start())
        self.progress = QProgressBar(maximum=0)  # busy indicator
        self.progress.setVisible(False)
        self.message = QLabel("Drop image files here or on the window.")
        self.message.setWordWrap(True)
        header = QHBoxLayout()
        header.addWidget(self.open_button)
        header.addWidget(self.topk_spin)
        header.addWidget(self.progress, 1)
        header.addStretch(1)
        self.rows = QWidget()
        self.rows_layout = QVBoxLayout(self.rows)
        self.rows_layout.addStretch(1)
        scroll = QScrollArea(widgetResizable=True)
        scroll.setWidget(self.rows)
        layout = QVBoxLayout(self)
        layout.addLayout(header)
        layout.addWidget(self.message)
        layout.addWidget(scroll, 1)

    def busy(self) -> bool:
        """True while a prediction waits or runs."""
        return self._rerun.isActive() or self.runner.active > 0

    def shutdown(self) -> None:
        """Cancel and wait for the worker (window close)."""
        self._rerun.stop()
        self.runner.shutdown()

    # ------------------------------------------------------------------ input
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # Qt override
        if mime_paths(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # Qt override
        paths = mime_paths(event.mimeData())
        if not paths:
            return
        event.acceptProposedAction()
        self.open_paths(paths)

    def open_paths(self, paths: list[str]) -> None:
        """Open dropped files through the session; errors are shown here, state unchanged."""
        try:
            self.session.open_paths(paths)
        except XnorlabError as exc:
            show_message(self.message, str(exc), error=True)

    def open_images(self) -> None:
        """File > Open image: choose image files and predict them."""
        paths, _ = QFileDialog.getOpenFileNames(self, "Open images", "", IMAGE_FILTER)
        if paths:
            self.show_images(paths)

    # ------------------------------------------------------------------ prediction
    def _preprocessing(self) -> Any:
        loaded = self.session.loaded
        if loaded is None:
            raise XnorlabError("open a model first")
        prep = loaded.preprocessing
        if prep is None and self.session.dataset is not None:
            prep = self.session.dataset.preprocessing
        if prep is None:
            raise XnorlabError("the open model does not say how to preprocess images")
        return prep

    def show_images(self, paths: list[str]) -> None:
        """New images from the user: bring this panel's tab forward and predict them."""
        self._bring_forward()
        self.predict_paths(paths)

    def predict_paths(self, paths: list[str]) -> None:
        """Predict ``paths`` in a worker; the shown results change only on success."""
        try:
            preprocessing = self._preprocessing()
            snapshot = self.session.snapshot()
        except XnorlabError as exc:
            show_message(self.message, str(exc), error=True)
            return
        show_message(self.message, f"predicting {len(paths)} image(s)…")
        self.progress.setVisible(True)
        self.task = self.runner.start(
            predict_files, snapshot, list(paths), preprocessing, self.session.class_names,
            k=self.topk_spin.value(), input_shape=self.session.input_shape, key="prediction",
            on_result=lambda results: self._show(list(paths), results, preprocessing),
            on_error=lambda text: show_message(self.message, text, error=True),
            on_finished=lambda: self.progress.setVisible(False),
        )  # fmt: skip

    def _bring_forward(self) -> None:
        """Raise the dock tab holding this panel (images dropped on the window land here)."""
        widget = self.parentWidget()
        while widget is not None and not isinstance(widget, QDockWidget):
            widget = widget.parentWidget()
        if widget is not None:
            widget.raise_()

    def _predict_again(self) -> None:
        if self.paths and self.session.loaded is not None:
            self.predict_paths(self.paths)

    def _show(self, paths: list[str], results: list[FilePrediction], preprocessing: Any) -> None:
        self.paths, self.results = paths, results
        while self.rows_layout.count() > 1:
            item = self.rows_layout.takeAt(0)
            row = item.widget() if item is not None else None
            if row is not None:
                row.deleteLater()
        for index, result in enumerate(results):
            self.rows_layout.insertWidget(index, PredictionRow(result, preprocessing))
        card = self.session.loaded.card if self.session.loaded is not None else {}
        untrained = " · random weights: these classes mean nothing" if card.get(
            "trained") is False else ""  # fmt: skip
        show_message(
            self.message,
            f"{self.session.display_name}: {agreement_sentence(results)} (top-1){untrained}",
        )

    def restyle(self) -> None:
        """Follow a theme switch (the differing top-1's colour)."""
        for row in self.findChildren(PredictionRow):
            row.restyle()
