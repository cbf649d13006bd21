"""PredictionPanel: drops yield float-vs-current predictions; bad drops keep the state."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from panel_support import lenet_session, simulate_drop, wait_until_idle, write_digit_png
from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent
from PySide6.QtWidgets import QApplication

from xnorlab.binary.surgery import float_mode
from xnorlab.data.images import load_image
from xnorlab.gui.main_window import MainWindow
from xnorlab.gui.panels.prediction import (
    PredictionPanel,
    PredictionRow,
    agreement_sentence,
    top1_differs,
)
from xnorlab.measure.predictions import FilePrediction, PredictionPair, TopK

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
    differing = sum(top1_differs(r) for r in panel.results)
    expected = f"differ on {differing} of 2 images" if differing else "agree on all 2 images"
    assert f"test:lenet: float and current {expected}" in panel.message.text()


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


def _prediction(float_top1: int, current_top1: int) -> FilePrediction:
    def topk(first: int) -> TopK:
        other = 1 - first
        return TopK((first, other), (f"class {first}", f"class {other}"), (0.8, 0.2))

    pair = PredictionPair(topk(float_top1), topk(current_top1))
    return FilePrediction("x.png", torch.zeros(1, 28, 28), pair)


def test_the_summary_is_a_sentence() -> None:
    same, other = _prediction(0, 0), _prediction(0, 1)
    assert agreement_sentence([same] * 3) == "float and current agree on all 3 images"
    assert agreement_sentence([same, other, same]) == "float and current differ on 1 of 3 images"
    assert agreement_sentence([same]) == "float and current agree"
    assert agreement_sentence([other]) == "float and current differ on the image"


def test_cards_fit_the_dock_width(panel, qtbot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    long_name = "a very long class name that an ImageNet label could have"
    panel.session.loaded.class_names = [long_name, *panel.session.loaded.class_names[1:]]
    panel.resize(420, 700)  # the right-hand dock at 1600 x 1000
    panel.predict_paths([str(write_digit_png(tmp_path / "one.png"))])
    wait_until_idle(panel, qtbot)
    QApplication.processEvents()
    rows = panel.findChildren(PredictionRow)
    assert len(rows) == 1
    row = rows[0]
    for label in (row.picture, row.float_label, row.current_label):
        assert label.sizeHint().width() <= label.width(), label.text()[:60]
    assert row.sizeHint().width() <= panel.width()


def test_each_card_says_which_preprocessing_ran(panel, qtbot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A 28x28 light-on-dark digit is the model's input already; a 40x40 dark-on-light one is
    inverted and laid out as a digit."""
    ready = np.zeros((28, 28), np.uint8)
    ready[6:22, 12:16] = 255
    Image.fromarray(ready).save(tmp_path / "ready.png")
    paper = np.full((40, 40), 255, np.uint8)
    paper[8:32, 18:22] = 0
    Image.fromarray(paper).save(tmp_path / "paper.png")
    panel.predict_paths([str(tmp_path / "ready.png"), str(tmp_path / "paper.png")])
    wait_until_idle(panel, qtbot)
    # cards of an earlier prediction may still await deletion (hidden): only the shown ones count
    rows = [row for row in panel.findChildren(PredictionRow) if row.isVisibleTo(panel)]
    assert len(rows) == 2
    texts = {Path(row.result.path).name: row.steps_label.text() for row in rows}
    assert texts["ready.png"] == "prepared: taken as it is (28x28, the model's input)"
    assert texts["paper.png"].startswith("prepared: grayscale, inverted (light background)")
    assert "digit layout" in texts["paper.png"] and "normalized" not in texts["paper.png"]
    for row in rows:
        assert row.steps_label.isVisibleTo(panel)
        assert row.steps_label.toolTip().splitlines() == list(row.result.steps)
        assert row.result.steps[-1].startswith("normalized")
