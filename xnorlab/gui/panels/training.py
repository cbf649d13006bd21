"""Training panel: train or fine-tune the current configuration, with live curves.

Fine-tune keeps the weights and trains in the current per-layer modes (binarize, then recover);
"from scratch" re-initializes the weights first. The run trains a private copy of the model in a
worker (``train.lab_copy.train_copy`` around ``xnorlab.train.training.train``), so the window stays
usable; when it finishes, its best weights are copied into the open model and every view is told
(``LabSession.mark_weights_changed``, so titles and reports say the weights are fine-tuned).
Cancel stops the run and leaves the model unchanged. While a run goes the session's modes are
locked (``LabSession.lock_modes``): the result belongs to the modes it started with. The
result can be saved as a checkpoint (``xnorlab.models.checkpoint.save_checkpoint``) that records
the modes, layer settings, classes, preprocessing and the training card.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from xnorlab.common.errors import XnorlabError
from xnorlab.gui.panels.base import TaskPanel, show_message, subscribe
from xnorlab.gui.panels.charts import ACCURACY_RANGE, CurvesChart
from xnorlab.lab.session import LabSession
from xnorlab.models.checkpoint import layer_settings, save_checkpoint
from xnorlab.models.loaded import LoadedModel
from xnorlab.train.lab_copy import TrainingOutcome, train_copy
from xnorlab.train.training import TrainConfig, TrainResult

SAVE_FILTER = "PyTorch checkpoint (*.pt);;safetensors (*.safetensors)"
LOCK_REASON = "a training run uses the current modes (Cancel it in the Training tab to change them)"


def missing_for_training(session: LabSession) -> str:
    """What is missing before training can start ("" when nothing), said exactly."""
    if session.loaded is None and session.dataset is None:
        return "open a model (Ctrl+O) and a dataset (Ctrl+D) first"
    if session.loaded is None:
        return "open a model first (Ctrl+O)"
    if session.dataset is None:
        return (
            f"{session.model_name} has no dataset to train on: open one first (Ctrl+D), "
            "with the model's classes"
        )
    return ""


def checkpoint_meta(session: LabSession) -> dict[str, Any]:
    """What a checkpoint of the open model records besides its weights (JSON-able); the card
    of the run that changed the weights in the app (training, a fine-tuned search), else the
    file's."""
    loaded = session.loaded
    if loaded is None:
        raise XnorlabError("no model is open")
    modes, configs = layer_settings(loaded.model)
    meta: dict[str, Any] = {
        "arch": loaded.arch,
        "num_classes": len(loaded.class_names) or None,
        "class_names": list(loaded.class_names),
        "modes": modes,
        "layer_config": configs,
        "card": dict(session.weights_card or loaded.card),
        "default_data": loaded.default_data or session.dataset_spec,
    }
    if loaded.preprocessing is not None:
        meta["preprocessing"] = loaded.preprocessing.to_json()
    return meta


class TrainingPanel(TaskPanel):
    """Epochs, learning rate, live loss/accuracy curves, progress, cancel and save; a
    cancelled run leaves the open model as it was."""

    def __init__(self, session: LabSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.outcome: TrainingOutcome | None = None
        self._epochs_drawn = 0
        self._build()
        subscribe(self, [(session.model_changed, self._on_model_changed)])

    def _build(self) -> None:
        self.epochs_spin = QSpinBox(minimum=1, maximum=1000, value=3)
        self.lr_spin = QDoubleSpinBox(decimals=5, minimum=1e-5, maximum=1.0, value=1e-3)
        self.lr_spin.setSingleStep(1e-4)
        self.batch_spin = QSpinBox(minimum=1, maximum=4096, value=64)
        self.limit_spin = QSpinBox(minimum=0, maximum=10_000_000, value=0)
        self.limit_spin.setSpecialValueText("all")
        self.limit_spin.setSingleStep(500)
        self.scratch_check = QCheckBox("from scratch (re-initialize the weights)")
        form = QFormLayout()
        form.addRow("Epochs", self.epochs_spin)
        form.addRow("Learning rate", self.lr_spin)
        form.addRow("Batch size", self.batch_spin)
        form.addRow("Training samples", self.limit_spin)
        form.addRow(self.scratch_check)
        self.start_button = QPushButton("Fine-tune")
        self.start_button.clicked.connect(self.start)
        self.scratch_check.toggled.connect(
            lambda on: self.start_button.setText("Train" if on else "Fine-tune")
        )
        self.cancel_button = self._make_cancel_button()
        self.save_button = QPushButton("Save checkpoint…")
        self.save_button.clicked.connect(self.save_dialog)
        buttons = QHBoxLayout()
        for button in (self.start_button, self.cancel_button, self.save_button):
            buttons.addWidget(button)
        self.progress = QProgressBar(maximum=1000)
        self.message = QLabel("Trains the open model in its current modes on the open dataset.")
        self.message.setWordWrap(True)
        self.loss_chart = CurvesChart("loss")
        self.acc_chart = CurvesChart("accuracy (%)", y_range=ACCURACY_RANGE)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.message)
        for chart in (self.loss_chart, self.acc_chart):
            layout.addWidget(chart.legend_label)
            layout.addWidget(chart, 1)

    # ------------------------------------------------------------------ running
    def config(self) -> TrainConfig:
        """The ``TrainConfig`` the controls describe."""
        limit = self.limit_spin.value()
        return TrainConfig(
            epochs=self.epochs_spin.value(), lr=self.lr_spin.value(),
            batch_size=self.batch_spin.value(), max_train_items=limit or None,
        )  # fmt: skip

    def start(self) -> None:
        """Start training in a worker (errors are shown in the panel, nothing changes)."""
        if self.busy():
            return
        missing = missing_for_training(self.session)
        if missing or self.session.loaded is None or self.session.dataset is None:
            show_message(self.message, missing, error=True)
            return
        loaded = self.session.loaded
        model_classes = len(loaded.class_names)
        data_classes = len(self.session.dataset.class_names)
        if model_classes and data_classes and model_classes != data_classes:
            show_message(self.message, f"the model has {model_classes} classes but the dataset "
                         f"has {data_classes}: open matching data", error=True)  # fmt: skip
            return
        if self.session.modes_locked:  # another run (a search) measures the current weights
            show_message(self.message, f"cannot train now: {self.session.lock_reason}",
                         error=True)  # fmt: skip
            return
        self._reset_curves()
        self.session.lock_modes(LOCK_REASON)
        self._set_running(True)
        show_message(self.message, "training…")
        self.task = self.runner.start(
            train_copy, self.session.model, self.session.dataset, self.config(),
            from_scratch=self.scratch_check.isChecked(), key="training",
            on_progress=self._on_progress,
            on_result=lambda outcome: self._adopt(outcome, loaded),
            on_error=self._failed, on_cancelled=self._cancelled, on_finished=self._finished,
        )  # fmt: skip

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.save_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    def _finished(self) -> None:
        self._set_running(False)
        self.session.unlock_modes()

    def _failed(self, text: str) -> None:
        self.progress.setValue(0)
        show_message(self.message, text, error=True)

    def _cancelled(self) -> None:
        self.progress.setValue(0)  # an empty bar: nothing is running, nothing was kept
        show_message(self.message, "cancelled: the model is unchanged")

    def _reset_curves(self) -> None:
        epochs = self.epochs_spin.value()
        self.loss_chart.reset(epochs)
        self.acc_chart.reset(epochs)
        self._epochs_drawn = 0
        self.progress.setValue(0)

    def restyle(self) -> None:
        """Nothing to redraw on a theme switch: the labels and legends take their colours
        from the palette, the window restyles the charts' axes."""

    def _on_progress(self, fraction: float, message: str, payload: object) -> None:
        self.progress.setValue(int(1000 * fraction))
        if message:
            show_message(self.message, message)
        if not isinstance(payload, dict):
            return
        step = payload.get("step") or {}
        if "train_loss" in step and "val_acc" not in step:
            self.loss_chart.add_point("train (running mean)", fraction * self.epochs_spin.value(),
                                      float(step["train_loss"]))  # fmt: skip
        for record in payload.get("epochs", [])[self._epochs_drawn :]:
            self._draw_epoch(record)
            self._epochs_drawn += 1

    def _draw_epoch(self, record: dict[str, Any]) -> None:
        epoch = float(record["epoch"])
        self.loss_chart.add_point("val", epoch, float(record["val_loss"]))
        self.acc_chart.add_point("train", epoch, 100 * float(record["train_acc"]))
        self.acc_chart.add_point("val", epoch, 100 * float(record["val_acc"]))

    def _adopt(self, outcome: TrainingOutcome, loaded: LoadedModel) -> None:
        if self.session.loaded is not loaded:
            show_message(self.message, "another model was opened meanwhile: result dropped",
                         error=True)  # fmt: skip
            return
        self.session.model.load_state_dict(outcome.model.state_dict())
        self.session.mark_weights_changed(
            "trained" if outcome.from_scratch else "fine-tuned", outcome.result.card
        )
        self.outcome = outcome
        result = outcome.result
        for record in [vars(m) for m in result.history][self._epochs_drawn :]:
            self._draw_epoch(record)
        self.progress.setValue(1000)
        show_message(
            self.message,
            f"done in {result.seconds:.1f} s: kept epoch {result.kept_epoch}, {_val_text(result)};"
            " the open model now has these weights",
        )

    def _on_model_changed(self) -> None:
        if self.busy():
            self.cancel()
        self.outcome = None

    # ------------------------------------------------------------------ saving
    def save_dialog(self) -> None:
        """Ask for a file name and save the open model (with its modes) there."""
        path, _ = QFileDialog.getSaveFileName(self, "Save checkpoint", "model.pt", SAVE_FILTER)
        if path:
            self.save(path)

    def save(self, path: str | Path) -> Path | None:
        """Save the open model with its modes and training card; errors shown in the panel."""
        try:
            meta = checkpoint_meta(self.session)
            written = save_checkpoint(path, self.session.model, meta)
        except (XnorlabError, OSError) as exc:
            show_message(self.message, f"cannot save: {exc}", error=True)
            return None
        show_message(self.message, f"saved {written}")
        return written


def _val_text(result: TrainResult) -> str:
    """The kept weights' accuracy on the split that chose nothing, with n and interval."""
    return "no split left to report on" if result.val is None else f"val {result.val.text()}"
