"""TrainingPanel: starts, reports progress, cancels (model unchanged), adopts and saves."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
import torch
from panel_support import lenet_session, small_bundle, wait_until_idle

from xnorlab.binary.surgery import current_modes
from xnorlab.gui.main_window import MainWindow
from xnorlab.gui.panels.training import TrainingPanel, missing_for_training
from xnorlab.lab.session import LabSession
from xnorlab.models.spec import load_model_spec

pytestmark = pytest.mark.gui


@pytest.fixture
def panel(qtbot):  # type: ignore[no-untyped-def]
    widget = TrainingPanel(lenet_session("paper"))
    qtbot.addWidget(widget)
    yield widget
    widget.shutdown()


def _weights(panel: TrainingPanel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in panel.session.model.state_dict().items()}


def test_training_reports_progress_then_cancels_leaving_the_model(panel, qtbot) -> None:  # type: ignore[no-untyped-def]
    before, revision = _weights(panel), panel.session.revision
    panel.epochs_spin.setValue(50)  # far longer than the test waits
    panel.batch_spin.setValue(8)
    progress: list[float] = []
    panel.start()
    assert panel.busy() and not panel.start_button.isEnabled()
    panel.task.progressed.connect(lambda fraction, *_: progress.append(fraction))
    qtbot.waitUntil(lambda: len(progress) >= 3, timeout=20_000)
    assert panel.task.worker_thread_id != threading.get_ident()
    assert panel.progress.value() > 0
    assert panel.loss_chart.series["train (running mean)"][1]  # live curve has points
    panel.cancel()
    wait_until_idle(panel, qtbot)
    assert "cancelled" in panel.message.text()
    after = _weights(panel)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert panel.session.revision == revision
    assert panel.start_button.isEnabled() and not panel.cancel_button.isEnabled()


def test_finished_training_becomes_the_model_and_saves(panel, qtbot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    session = panel.session
    modes = current_modes(session.model)
    before = _weights(panel)
    changed: list[bool] = []
    session.weights_changed.connect(lambda: changed.append(True))
    panel.epochs_spin.setValue(2)
    panel.limit_spin.setValue(96)
    panel.start()
    wait_until_idle(panel, qtbot)
    result = panel.outcome.result
    assert [m.epoch for m in result.history] == [1, 2]
    assert changed == [True]
    after = _weights(panel)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    trained = panel.outcome.model.state_dict()
    assert all(torch.equal(after[k], trained[k]) for k in after)
    assert current_modes(session.model) == modes  # trained in, and kept, the current modes
    assert len(panel.acc_chart.series["val"][1]) == 2
    path = panel.save(tmp_path / "tuned.pt")
    assert path is not None and path.exists()
    reloaded = load_model_spec(str(path))
    assert reloaded.modes == modes
    assert reloaded.card["val_accuracy"] == pytest.approx(result.val.value)
    state = reloaded.model.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in after)


def test_training_without_data_says_so(qtbot) -> None:  # type: ignore[no-untyped-def]
    widget = TrainingPanel(lenet_session("paper", with_data=False))
    qtbot.addWidget(widget)
    widget.start()
    assert not widget.busy()
    assert "dataset" in widget.message.text()


def test_save_errors_are_shown_in_the_panel(panel, tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert panel.save(tmp_path / "model.unknown") is None
    assert "cannot save" in panel.message.text()


def test_class_count_mismatch_is_refused_before_training(qtbot) -> None:  # type: ignore[no-untyped-def]
    session = lenet_session("paper", with_data=False)
    bundle = small_bundle()
    session.set_dataset(replace(bundle, class_names=bundle.class_names[:5]), "five")
    widget = TrainingPanel(session)
    qtbot.addWidget(widget)
    widget.start()
    assert not widget.busy()
    assert "10 classes but the dataset has 5" in widget.message.text()


def test_modes_are_locked_during_a_run_and_the_status_bar_says_why(qtbot) -> None:  # type: ignore[no-untyped-def]
    window = MainWindow(lenet_session("paper"))
    qtbot.addWidget(window)
    window.resize(1600, 1000)
    window.show()
    qtbot.waitUntil(lambda: not window.busy(), timeout=60_000)
    session, panel = window.session, window.panels["training"]
    session.select(session.layer_names()[1])
    session.set_mode(session.layer_names()[1], "bwn")  # something to undo
    modes = session.modes()
    panel.epochs_spin.setValue(50)  # far longer than the test waits
    panel.batch_spin.setValue(8)
    panel.start()
    qtbot.waitUntil(lambda: panel.progress.value() > 0, timeout=20_000)
    assert "training run" in session.lock_reason
    actions = window.actions_by_name
    for name in ("all_bwn", "all_xnor", "all_float", "paper", "undo", "selected_xnor", "pattern"):
        assert not actions[name].isEnabled(), name
        actions[name].trigger()  # a disabled action (menu, toolbar or shortcut) does nothing
    assert not window.scaling_box.isEnabled()
    assert all(not combo.isEnabled() for combo in window.table.mode_editors())
    assert session.attempt(session.apply_preset, "bwn") is None  # refused, with the reason
    assert "training run" in window.message_bar.text()
    assert session.modes() == modes
    window.message_bar.clear()
    window.statusBar().clearMessage()
    assert "modes locked" in window.state_label.text() and window.state_label.isVisible()
    panel.cancel()
    wait_until_idle(panel, qtbot)
    assert not session.modes_locked
    assert actions["all_bwn"].isEnabled() and window.scaling_box.isEnabled()
    assert all(combo.isEnabled() for combo in window.table.mode_editors())
    assert panel.progress.value() == 0  # not left at the cancelled run's share
    assert panel.acc_chart.y_view_range() == pytest.approx((-2.0, 102.0))  # 0..100 % + padding
    assert panel.acc_chart.x_range() == pytest.approx((-1.0, 51.0))
    for chart in (panel.loss_chart, panel.acc_chart):
        assert "x0." not in chart.getAxis("bottom").labelString()  # no SI prefix on epochs
    qtbot.waitUntil(lambda: not window.busy(), timeout=60_000)
    window.close()


def test_fine_tune_says_exactly_what_is_missing(qtbot) -> None:  # type: ignore[no-untyped-def]
    session = lenet_session("paper", with_data=False)
    widget = TrainingPanel(session)
    qtbot.addWidget(widget)
    widget.start()
    text = widget.message.text()
    assert "test:lenet has no dataset" in text and "Ctrl+D" in text
    assert "open a model" not in text  # a model is open
    assert (
        missing_for_training(LabSession()) == "open a model (Ctrl+O) and a dataset (Ctrl+D) first"
    )


def test_fine_tuned_weights_are_named_in_the_title(qtbot) -> None:  # type: ignore[no-untyped-def]
    window = MainWindow(lenet_session("paper"))
    qtbot.addWidget(window)
    panel = window.panels["training"]
    panel.epochs_spin.setValue(1)
    panel.limit_spin.setValue(64)
    panel.start()
    wait_until_idle(panel, qtbot)
    assert window.windowTitle() == "xnorlab - test:lenet (fine-tuned)"
    assert "test:lenet (fine-tuned)" in window.model_label.text()
    assert window.session.model_name == "test:lenet"  # the recent list keeps the spec
    qtbot.waitUntil(lambda: not window.busy(), timeout=60_000)
    window.close()
