"""File > Export report… / Export packed model (.xnor)… and the screenshot mode's trust refusal."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from PySide6.QtWidgets import QFileDialog
from pytestqt.qtbot import QtBot
from torch import nn

from xnorlab.binary.modes import Mode
from xnorlab.gui.export_actions import REPORT_KEY, XNOR_KEY, ExportActions, exports_of
from xnorlab.gui.main_window import MainWindow
from xnorlab.gui.workers import Task
from xnorlab.lab.session import LabSession
from xnorlab.models.demo import build_demo
from xnorlab.models.loaded import LoadedModel
from xnorlab.models.spec import load_model_spec

WAIT_MS = 30_000


@pytest.fixture(scope="module")
def lenet_parts() -> tuple[LoadedModel, object, str]:
    """demo:lenet with its validation data, loaded once (each test adopts a deep copy)."""
    session = LabSession()
    session.open_model("demo:lenet")
    assert session.loaded is not None and session.dataset is not None
    return session.loaded, session.dataset, session.dataset_spec


@pytest.fixture
def lenet_window(qtbot: QtBot, lenet_parts: tuple[LoadedModel, object, str]) -> MainWindow:
    loaded, bundle, spec = lenet_parts
    session = LabSession()
    session.adopt(copy.deepcopy(loaded))
    session.set_dataset(bundle, spec)
    win = MainWindow(session, panels=False)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: not win.busy(), timeout=WAIT_MS)
    return win


def choose_file(monkeypatch: pytest.MonkeyPatch, path: Path, selected: str = "") -> list[str]:
    """Make the save dialog return ``path``; the returned list records the dialog titles."""
    titles: list[str] = []

    def fake(_parent: object, title: str, *_args: object) -> tuple[str, str]:
        titles.append(title)
        return str(path), selected

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(fake))
    return titles


def run_action(qtbot: QtBot, window: MainWindow, name: str) -> Task:
    """Trigger menu action ``name`` and wait until its worker has finished."""
    exports = exports_of(window)
    exports.last_task = None
    window.actions_by_name[name].trigger()
    task = exports.last_task
    assert task is not None, window.message_bar.text()
    qtbot.waitUntil(lambda: task.done, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: not window.busy(), timeout=WAIT_MS)
    return task


def test_json_report_reflects_the_current_modes_off_the_gui_thread(
    qtbot: QtBot, lenet_window: MainWindow, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    session = lenet_window.session
    names = session.layer_names()
    toggled = names[1]
    new_mode = Mode.BWN if session.modes()[toggled] is not Mode.BWN else Mode.XNOR
    lenet_window.run_session(session.set_mode, toggled, new_mode)
    modes_before, revision = session.modes(), session.revision
    assert exports_of(lenet_window).sensitivity_action.isChecked()  # small model: on by default
    out = tmp_path / "lenet-report"  # no suffix: the JSON filter adds it
    titles = choose_file(monkeypatch, out, "JSON (*.json)")
    task = run_action(qtbot, lenet_window, "export_report")
    assert titles == ["Export report"]
    assert task.worker_thread_id not in (None, threading.get_ident())
    written = out.with_suffix(".json")
    assert written.is_file(), lenet_window.message_bar.text()
    report = json.loads(written.read_text())
    assert [row["name"] for row in report["layers"]] == names
    assert {row["name"]: row["mode"] for row in report["layers"]} == {
        name: mode.value for name, mode in modes_before.items()
    }
    assert report["layers"][1]["mode"] == new_mode.value  # the toggle is in the report
    assert all(row["binarize_alone"] is not None for row in report["layers"])
    assert str(written) in lenet_window.statusBar().currentMessage()
    assert session.modes() == modes_before and session.revision == revision  # model untouched
    assert not exports_of(lenet_window).progress_bar.isVisible()


def test_report_on_fine_tuned_weights_says_so(
    qtbot: QtBot, lenet_window: MainWindow, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    session = lenet_window.session
    with torch.no_grad():
        next(session.model.parameters()).mul_(0.5)  # what adopting a training result does
    session.mark_weights_changed("fine-tuned")
    assert lenet_window.windowTitle() == "xnorlab - demo:lenet (fine-tuned)"
    lenet_window.actions_by_name["report_sensitivity"].setChecked(False)  # faster
    out = tmp_path / "tuned.json"
    choose_file(monkeypatch, out, "JSON (*.json)")
    run_action(qtbot, lenet_window, "export_report")
    header = json.loads(out.read_text())["header"]
    assert header["model_spec"] == "demo:lenet (fine-tuned)"
    assert any("fine-tuned in the app" in note for note in header["notes"])


def test_html_report_without_sensitivity(
    qtbot: QtBot, lenet_window: MainWindow, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    session = lenet_window.session
    lenet_window.run_session(session.apply_preset, "xnor")
    lenet_window.actions_by_name["report_sensitivity"].trigger()  # the user switches it off
    out = tmp_path / "report.html"
    choose_file(monkeypatch, out, "JSON (*.json)")  # a typed suffix wins over the filter
    run_action(qtbot, lenet_window, "export_report")
    text = out.read_text()
    assert text.lstrip().lower().startswith("<!doctype html")
    assert "data:image/png;base64," in text  # self-contained plots
    assert all(name in text for name in session.layer_names())
    assert not list(tmp_path.glob("*.json"))


def test_xnor_export_gives_the_same_predictions(
    qtbot: QtBot, lenet_window: MainWindow, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    session = lenet_window.session
    lenet_window.run_session(session.apply_preset, "paper")
    lenet_window.run_session(session.set_mode, session.layer_names()[1], Mode.BWN)
    out = tmp_path / "lenet.xnor"
    choose_file(monkeypatch, out)
    task = run_action(qtbot, lenet_window, "export_xnor")
    assert task.worker_thread_id != threading.get_ident()
    assert out.is_file() and "packed model written to" in lenet_window.statusBar().currentMessage()
    inputs, _labels = session.sample_batch(16)
    with torch.no_grad():
        expected = session.model.eval()(inputs).argmax(dim=1)
        loaded = load_model_spec(str(out))
        got = loaded.model.eval()(inputs).argmax(dim=1)
    assert torch.equal(got, expected)


def test_unwritable_path_shows_an_error_and_keeps_state(
    qtbot: QtBot, lenet_window: MainWindow, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    session = lenet_window.session
    modes, revision, name = session.modes(), session.revision, session.model_name
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file, so nothing can be written below it")
    choose_file(monkeypatch, blocker / "report.json")
    exports_of(lenet_window).sensitivity_action.setChecked(False)
    run_action(qtbot, lenet_window, "export_report")
    message = lenet_window.message_bar.text()
    assert message.startswith("report not exported: cannot write") and "Traceback" not in message
    assert session.modes() == modes and session.revision == revision
    assert session.model_name == name and blocker.read_text().startswith("a file")


def test_report_on_a_dataset_with_only_a_validation_split(
    qtbot: QtBot, tiny_window: MainWindow, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    session = tiny_window.session  # tiny data: a val split only, 24 samples
    tiny_window.run_session(session.apply_preset, "xnor")
    out = tmp_path / "tiny.csv"
    choose_file(monkeypatch, out)
    run_action(qtbot, tiny_window, "export_report")
    assert out.is_file(), tiny_window.message_bar.text()
    rows = out.read_text().splitlines()
    assert len(rows) == 1 + len(session.layer_names())  # header + one row per layer
    assert all(name in text for name, text in zip(session.layer_names(), rows[1:], strict=True))


def test_model_that_cannot_be_packed_shows_a_clear_error(
    qtbot: QtBot, tiny_window: MainWindow, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    session = tiny_window.session
    modes, revision = session.modes(), session.revision
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "tiny.xnor"
    choose_file(monkeypatch, out)
    run_action(qtbot, tiny_window, "export_xnor")
    message = tiny_window.message_bar.text()
    assert message.startswith("packed model not exported: cannot export 'tiny'"), message
    assert not list(folder.iterdir())  # not even a temporary file
    assert session.modes() == modes and session.revision == revision


def test_cancelled_dialog_and_cancel_button_write_nothing(
    qtbot: QtBot, lenet_window: MainWindow, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *_a: ("", "")))
    exports = exports_of(lenet_window)
    assert exports.export_report() is None and exports.export_xnor() is None
    out = tmp_path / "report.md"
    choose_file(monkeypatch, out)
    task = exports.export_report()
    assert task is not None and exports.cancel_button.isVisible()
    exports.cancel_button.click()
    qtbot.waitUntil(lambda: task.done, timeout=WAIT_MS)
    assert "cancelled" in lenet_window.statusBar().currentMessage()
    assert not out.exists()
    assert lenet_window.runner.running(REPORT_KEY) is None
    assert lenet_window.runner.running(XNOR_KEY) is None


def test_sensitivity_default_follows_the_model_size(tiny_window: MainWindow) -> None:
    exports = tiny_window.findChild(ExportActions)
    assert exports is not None and exports.sensitivity_action.isChecked()
    big = nn.Sequential(nn.Flatten(), nn.Linear(64, 3000), nn.Linear(3000, 2000))  # 6.2M params
    tiny_window.session.adopt(LoadedModel("big", big, (1, 8, 8), []))
    assert not exports.sensitivity_action.isChecked()


def test_screenshot_refuses_the_trust_question(tmp_path: Path) -> None:
    pickled = tmp_path / "whole.pt"
    torch.save(build_demo("lenet"), pickled)  # a full pickle: loading it needs trust
    out = tmp_path / "shot.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "xnorlab.cli.main", "--screenshot", str(out), str(pickled)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-2000:]
    assert "never asks" in result.stderr and str(pickled) in result.stderr
    assert not out.exists()
