"""Small real models and data for the panel tests (imported by tests/gui/test_panels_*.py)."""

from __future__ import annotations

import time
from functools import cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication
from torch.utils.data import Subset

from xnorlab.data.bundle import DatasetBundle
from xnorlab.data.datasets import load_dataset
from xnorlab.data.images import MNIST_PREPROCESSING
from xnorlab.lab.session import LabSession
from xnorlab.models.demo import build_demo
from xnorlab.models.loaded import LoadedModel
from xnorlab.train.training import TrainConfig, train

DIGIT_NAMES = [str(i) for i in range(10)]


@cache
def digits_bundle() -> DatasetBundle:
    """scikit-learn's real 8x8 digits as 1x28x28 MNIST-style inputs (loaded once)."""
    return load_dataset("digits")


def small_bundle(n_train: int = 200, n_val: int = 120) -> DatasetBundle:
    """The first ``n_train`` / ``n_val`` items of the digits splits."""
    full = digits_bundle()
    return DatasetBundle(
        name="digits-small", train=Subset(full.train, range(n_train)),
        val=Subset(full.val, range(n_val)), class_names=list(full.class_names),
        preprocessing=full.preprocessing,
    )  # fmt: skip


@cache
def trained_lenet_state() -> dict[str, torch.Tensor]:
    """LeNet weights after a short float training on the small digits (done once per run).

    A trained net makes float, BWN and XNOR give different accuracies and predictions, so tests
    can tell a stale result from a fresh one.
    """
    torch.manual_seed(0)
    model = build_demo("lenet")
    train(model, small_bundle(), TrainConfig(epochs=2, lr=3e-3, batch_size=32, seed=0))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def lenet_session(modes: str = "paper", with_data: bool = True) -> LabSession:
    """A session on a briefly trained LeNet (MNIST preprocessing) with the small digits data."""
    session = LabSession()
    model = build_demo("lenet")
    model.load_state_dict(trained_lenet_state())
    loaded = LoadedModel(
        spec="test:lenet", model=model, input_shape=(1, 28, 28),
        class_names=list(DIGIT_NAMES), preprocessing=MNIST_PREPROCESSING, arch="lenet",
    )  # fmt: skip
    session.adopt(loaded, modes=modes)
    if with_data:
        session.set_dataset(small_bundle(), "digits-small")
    return session


def write_digit_png(path: Path, digit_column: int = 18) -> Path:
    """A white vertical stroke on black (a '1'), written as an 8-bit PNG."""
    pixels = np.zeros((40, 40), np.uint8)
    pixels[8:32, digit_column : digit_column + 4] = 255
    Image.fromarray(pixels).save(path)
    return path


def wait_until_idle(panel: object, qtbot: object, timeout_s: float = 30.0) -> None:
    """Process events until ``panel.busy()`` is False (raises on timeout), then the events
    its last callbacks posted."""
    deadline = time.monotonic() + timeout_s
    while panel.busy():  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            raise AssertionError(f"{type(panel).__name__} still busy after {timeout_s} s")
        qtbot.wait(10)  # type: ignore[attr-defined]
    # Qt shows widgets added to a visible layout by a posted event: deliver it before asserting
    QApplication.processEvents()


def simulate_drop(widget: object, paths: list[Path]) -> QDropEvent:
    """Drag ``paths`` onto ``widget`` (enter, then drop) as Qt delivers a real drop."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    enter = QDragEnterEvent(
        QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )  # fmt: skip
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted(), "the widget refused the drag"
    event = QDropEvent(
        QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
    )  # fmt: skip
    QApplication.sendEvent(widget, event)
    assert event.isAccepted()
    return event
