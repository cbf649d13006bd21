"""GUI test set-up: a temporary QSettings location and a drained thread pool after each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, QThreadPool


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
