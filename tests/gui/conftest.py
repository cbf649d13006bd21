"""GUI test set-up: a temporary QSettings location and a drained thread pool after each test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, QThreadPool
from pytestqt.qtbot import QtBot


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
import torch  # noqa: E402
from torch import nn  # noqa: E402

from xnorlab.gui.main_window import MainWindow  # noqa: E402
from xnorlab.lab.session import LabSession  # noqa: E402
from xnorlab.models.loaded import LoadedModel  # noqa: E402

TINY_SHAPE = (1, 8, 8)


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


@dataclass
class TinyBundle:
    """Stands in for ``xnorlab.data.datasets.DatasetBundle`` (same fields the session reads)."""

    val: torch.utils.data.TensorDataset
    input_shape: tuple[int, int, int]
    class_names: list[str]


def tiny_bundle(count: int = 24) -> TinyBundle:
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(count, *TINY_SHAPE, generator=generator)
    labels = torch.arange(count) % 3
    return TinyBundle(torch.utils.data.TensorDataset(inputs, labels), TINY_SHAPE, ["a", "b", "c"])


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
