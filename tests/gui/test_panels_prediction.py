"""PredictionPanel: drops yield float-vs-current predictions; bad drops keep the state."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from panel_support import lenet_session, simulate_drop, wait_until_idle, write_digit_png
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent
from PySide6.QtWidgets import QApplication

from xnorlab.binary.surgery import float_mode
from xnorlab.data.images import load_image
from xnorlab.gui.main_window import MainWindow
from xnorlab.gui.panels.prediction import PredictionPanel

pytestmark = pytest.mark.gui


@pytest.fixture
def panel(qtbot):  # type: ignore[no-untyped-def]
    session = lenet_session("paper", with_data=False)
    widget = PredictionPanel(session)
    qtbot.addWidget(widget)
    widget.show()
    yield widget
    widget.shutdown()


def _expected_probs(panel: PredictionPanel, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    model = panel.session.model
    x = load_image(str(path), panel.session.loaded.preprocessing)[None]
    with torch.no_grad():
        current = torch.softmax(model(x), 1)[0]
        with float_mode(model):
            floating = torch.softmax(model(x), 1)[0]
    return floating, current


def test_drag_enter_accepts_file_urls(panel: PredictionPanel) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile("/tmp/x.png")])
    event = QDragEnterEvent(
        QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )  # fmt: skip
    QApplication.sendEvent(panel, event)
    assert event.isAccepted()


def test_image_drop_yields_predictions_matching_the_model(panel, qtbot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    paths = [write_digit_png(tmp_path / "one.png"), write_digit_png(tmp_path / "b.png", 6)]
    simulate_drop(panel, paths)
    wait_until_idle(panel, qtbot)
    assert [Path(r.path).name for r in panel.results] == ["one.png", "b.png"]
    assert panel.rows_layout.count() == 3  # two rows + the stretch
    assert panel.task is not None and panel.task.worker_thread_id != threading.get_ident()
    for result, path in zip(panel.results, paths, strict=True):
        floating, current = _expected_probs(panel, path)
        pair = result.pair
        assert len(pair.float_topk.indices) == 5
        assert pair.float_topk.indices[0] == int(floating.argmax())
        assert pair.current_topk.indices[0] == int(current.argmax())
        for index, prob in zip(pair.current_topk.indices, pair.current_topk.probabilities,
                               strict=True):  # fmt: skip
            assert prob == pytest.approx(float(current[index]), abs=1e-5)
        assert result.model_input.shape == (1, 28, 28)
    assert "2 image(s)" in panel.message.text()


def test_bad_drop_shows_an_error_and_keeps_the_predictions(panel, qtbot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    good = write_digit_png(tmp_path / "good.png")
    simulate_drop(panel, [good])
    wait_until_idle(panel, qtbot)
    before = panel.results
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    simulate_drop(panel, [corrupt])
    wait_until_idle(panel, qtbot)
    assert "corrupt.png" in panel.message.text()
    assert panel.results is before and panel.paths == [str(good)]
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello")
    simulate_drop(panel, [text_file])
    assert "unsupported file type" in panel.message.text()
    assert panel.results is before
    assert panel.session.model_name == "test:lenet"


def test_mixed_drop_with_one_corrupt_file_changes_nothing(panel, qtbot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    good = write_digit_png(tmp_path / "good.png")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    simulate_drop(panel, [good, empty])
    wait_until_idle(panel, qtbot)
    assert panel.results == []
    assert "empty.png" in panel.message.text()


def test_window_drops_arrive_through_the_session_and_modes_repredict(
    panel, qtbot, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    path = write_digit_png(tmp_path / "one.png")
    panel.session.open_paths([str(path)])  # what the main window's drop handler calls
    wait_until_idle(panel, qtbot)
    assert len(panel.results) == 1
    first = panel.results
    panel.session.apply_preset("float")
    wait_until_idle(panel, qtbot)
    assert panel.results is not first
    pair = panel.results[0].pair
    assert pair.current_topk == pair.float_topk  # every layer float: identical predictions


def test_image_dropped_on_the_main_window_lands_in_the_prediction_tab(qtbot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    window = MainWindow(lenet_session("paper", with_data=False))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    qtbot.wait(50)  # the window's deferred layout set-up runs first, as before any user drop
    panel = window.panels["prediction"]
    window.docks["metrics"].raise_()
    simulate_drop(window, [write_digit_png(tmp_path / "one.png")])
    wait_until_idle(panel, qtbot)
    assert [Path(r.path).name for r in panel.results] == ["one.png"]
    assert not window.docks["prediction"].visibleRegion().isEmpty()  # its tab was raised
    window.close()


def test_untrained_models_are_flagged(panel, qtbot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = write_digit_png(tmp_path / "one.png")
    panel.predict_paths([str(path)])
    wait_until_idle(panel, qtbot)
    assert "random weights" not in panel.message.text()
    panel.session.loaded.card = {"trained": False}
    panel.predict_paths([str(path)])
    wait_until_idle(panel, qtbot)
    assert "random weights" in panel.message.text()
