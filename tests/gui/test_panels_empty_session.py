"""Every panel on a session with no model: clear hints, no worker, no exception."""

from __future__ import annotations

import pytest

from xnorlab.gui.panels.metrics import MetricsPanel
from xnorlab.gui.panels.prediction import PredictionPanel
from xnorlab.gui.panels.training import TrainingPanel
from xnorlab.lab.session import LabSession

pytestmark = pytest.mark.gui


def test_panels_without_a_model_say_what_is_missing(qtbot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    session = LabSession()
    prediction, metrics, training = (
        PredictionPanel(session), MetricsPanel(session), TrainingPanel(session)
    )  # fmt: skip
    for panel in (prediction, metrics, training):
        qtbot.addWidget(panel)
    prediction.predict_paths([str(tmp_path / "x.png")])
    assert prediction.message.text() == "open a model first"
    metrics.recompute()
    metrics.start_latency()
    training.start()
    assert "open a model" in training.message.text()
    assert training.save(tmp_path / "x.pt") is None
    assert "no model is open" in training.message.text()
    assert not (prediction.busy() or metrics.busy() or training.busy())
    assert metrics.float_mem.text() == "—"
