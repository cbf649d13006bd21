"""GUI test set-up: a temporary QSettings location and a drained thread pool after each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PySide6.QtCore import QSettings, QThreadPool
from pytestqt.qtbot import QtBot
from torch import nn
from torch.utils.data import TensorDataset

from xnorlab.data.bundle import DatasetBundle
from xnorlab.data.images import Preprocessing
from xnorlab.gui.main_window import MainWindow
from xnorlab.lab.session import LabSession
from xnorlab.models.loaded import LoadedModel

TINY_SHAPE = (1, 8, 8)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "real_window: runs the app on an X server (Xvfb); skips without Xvfb"
    )


@pytest.fixture(autouse=True)
def _temporary_settings(tmp_path: Path, qapp: object) -> Iterator[Path]:
    """Every GUI test reads and writes QSettings under its own temporary folder."""
    folder = tmp_path / "settings"
    folder.mkdir()
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    yield folder


@pytest.fixture(autouse=True)
def _drain_pool() -> Iterator[None]:
    """No worker of one test may still run (and emit) during the next one."""
    yield
    assert QThreadPool.globalInstance().waitForDone(20_000), "a worker did not finish in 20 s"


# ---------------------------------------------------------------------------- small lab set-up
def tiny_net() -> nn.Module:
    """Four binarizable layers: conv, conv, linear, linear (BN and Hardtanh between)."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.Hardtanh(),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.Flatten(),
        nn.Linear(6 * 8 * 8, 16),
        nn.Hardtanh(),
        nn.Linear(16, 3),
    )


def tiny_bundle(count: int = 24) -> DatasetBundle:
    """``count`` random validation samples for ``tiny_net`` and an empty train split."""
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(count, *TINY_SHAPE, generator=generator)
    labels = torch.arange(count) % 3
    empty = TensorDataset(torch.empty(0, *TINY_SHAPE), torch.empty(0, dtype=torch.long))
    prep = Preprocessing(channels=1, height=8, width=8, mean=(0.5,), std=(0.5,))
    return DatasetBundle("tiny", empty, TensorDataset(inputs, labels), ["a", "b", "c"], prep)


@pytest.fixture
def tiny_session() -> LabSession:
    """A session with the tiny model and a tiny validation set."""
    session = LabSession()
    session.adopt(LoadedModel("tiny", tiny_net(), TINY_SHAPE, ["a", "b", "c"]))
    session.set_dataset(tiny_bundle(), "tiny-data")
    return session


@pytest.fixture
def tiny_window(qtbot: QtBot, tiny_session: LabSession) -> MainWindow:
    """The main window (without panels) on ``tiny_session``, shown and idle."""
    win = MainWindow(tiny_session, panels=False)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: not win.busy(), timeout=30_000)
    return win
