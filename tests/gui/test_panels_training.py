"""TrainingPanel: starts, reports progress, cancels (model unchanged), adopts and saves."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
import torch
from panel_support import lenet_session, small_bundle, wait_until_idle

from xnorlab.binary.surgery import current_modes
from xnorlab.gui.panels.training import TrainingPanel
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
