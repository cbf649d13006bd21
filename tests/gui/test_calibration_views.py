"""Without a dataset the views, the table and reports run on the bundled calibration photos."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from panel_support import wait_until_idle
from pytestqt.qtbot import QtBot
from torch import nn
from torch.utils.data import TensorDataset

from xnorlab.binary.stats import compare_layers
from xnorlab.data.bundle import DatasetBundle
from xnorlab.data.calibration import PHOTO_COUNT, calibration_batch
from xnorlab.data.images import IMAGENET_PREPROCESSING, Preprocessing
from xnorlab.gui.export_actions import build_and_write_report
from xnorlab.gui.layer_table import COL, DASH
from xnorlab.gui.main_window import MainWindow
from xnorlab.gui.panels.metrics import MetricsPanel
from xnorlab.gui.views import LayerViews
from xnorlab.lab.layerview import input_image
from xnorlab.lab.session import InputKind, LabSession
from xnorlab.models.loaded import LoadedModel
from xnorlab.models.spec import load_model_spec
from xnorlab.report.build import ReportOptions

WAIT_MS = 30_000
SHAPE = (3, 8, 8)
PHOTOS = "bundled calibration photos"


def colour_session() -> LabSession:
    """A tiny 3-channel model (ImageNet-style input) and no dataset."""
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Hardtanh(),
        nn.Conv2d(4, 6, 3, padding=1), nn.Flatten(), nn.Linear(6 * 8 * 8, 3),
    )  # fmt: skip
    session = LabSession()
    session.adopt(LoadedModel("tiny-rgb", net, SHAPE, ["a", "b", "c"]))
    return session


@pytest.fixture
def window(qtbot: QtBot) -> MainWindow:
    win = MainWindow(colour_session(), panels=False)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: not win.busy(), timeout=WAIT_MS)
    return win


def test_torchvision_model_without_data_shows_photo_activations(qtbot: QtBot) -> None:
    session = LabSession()
    session.adopt(load_model_spec("resnet18"))  # no ImageNet here: random init, no dataset
    assert session.dataset is None
    views = LayerViews(session)
    qtbot.addWidget(views)
    with qtbot.waitSignal(views.updated, timeout=WAIT_MS):
        session.select("layer1.0.conv1")
    view = views.current
    assert view is not None and view.sample_count == 1  # resnet18's MAC budget: one photo
    assert view.input_hist is not None and int(view.input_hist.counts.sum()) == 64 * 56 * 56
    assert view.output is not None and view.kmap is not None and view.kmap.shape == (56, 56)
    photo = calibration_batch((3, 224, 224), IMAGENET_PREPROCESSING, 1)
    np.testing.assert_allclose(view.input_image, input_image(photo), atol=1e-6)
    assert f"{PHOTOS} (1 of 8, unlabelled)" in views.header.text()
    assert "calibration photos" in views.activations.getPlotItem().titleLabel.text
    assert "calibration photo" in views.kmap.input_label.text
    assert f"inputs: {PHOTOS}" in views.summary.text()
    views.shutdown()


def test_table_errors_use_the_photos_and_say_so(window: MainWindow, qtbot: QtBot) -> None:
    session, table = window.session, window.table.model
    name = session.layer_names()[1]
    session.set_mode(name, "xnor")
    qtbot.waitUntil(lambda: not window.busy(), timeout=WAIT_MS)
    expected = compare_layers(session.snapshot(), calibration_batch(SHAPE, count=PHOTO_COUNT))
    row = table.stats[name]
    assert row.propagated_error == pytest.approx(expected[name].propagated_error, rel=1e-5)
    assert row.flip_rate == pytest.approx(expected[name].sign.flip_rate, abs=1e-9)
    assert all(not math.isnan(table.stats[n].propagated_error) for n in session.layer_names())
    tip = table.index(1, COL["prop"]).data(3)  # ToolTipRole
    assert f"inputs: {PHOTOS} (8, unlabelled)" in tip
    assert f"{PHOTOS} (8, unlabelled)" in window.data_label.text()
    assert window.views.current is not None and window.views.current.sample_count == PHOTO_COUNT
    assert window.views.source.kind is InputKind.CALIBRATION


def test_a_dataset_replaces_the_photos_and_a_new_model_follows(
    window: MainWindow, qtbot: QtBot
) -> None:
    session = window.session
    generator = torch.Generator().manual_seed(3)
    val = TensorDataset(torch.randn(20, *SHAPE, generator=generator), torch.arange(20) % 3)
    train = TensorDataset(torch.empty(0, *SHAPE), torch.empty(0, dtype=torch.long))
    prep = Preprocessing(channels=3, height=8, width=8)
    session.set_dataset(DatasetBundle("rgb", train, val, ["a", "b", "c"], prep), "rgb-data")
    qtbot.waitUntil(lambda: not window.busy(), timeout=WAIT_MS)
    assert window.views.source.kind is InputKind.DATASET
    assert "rgb-data, 18 items, seed 0, 6 per class (3 classes)" in window.views.header.text()
    assert "calibration" not in window.data_label.text()
    assert "rgb-data" in window.table.model.index(1, COL["prop"]).data(3)
    # a model the photos cannot feed: the dataset goes (shape), and nothing replaces it
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Flatten(), nn.Linear(256, 3))
    session.adopt(LoadedModel("two-channel", net, (2, 8, 8), ["a", "b", "c"]))
    qtbot.waitUntil(lambda: not window.busy(), timeout=WAIT_MS)
    assert session.dataset is None and window.views.source.kind is InputKind.NONE
    assert "open a dataset" in window.views.header.text()
    assert window.table.model.index(0, COL["prop"]).data() == DASH
    assert "calibration" not in window.data_label.text()
    # and back to an image model without data: the photos again
    session.adopt(colour_session().loaded)
    qtbot.waitUntil(lambda: not window.busy(), timeout=WAIT_MS)
    assert window.views.source.kind is InputKind.CALIBRATION
    assert PHOTOS in window.data_label.text()


def test_accuracy_is_never_measured_on_the_photos(qtbot: QtBot) -> None:
    panel = MetricsPanel(colour_session())
    qtbot.addWidget(panel)
    panel.auto_latency.setChecked(False)
    wait_until_idle(panel, qtbot)
    assert "open a dataset to measure accuracy" in panel.acc_message.text()
    assert panel.accuracy is None
    panel.shutdown()


def test_exported_report_without_data_calibrates_on_the_photos(tmp_path: Path) -> None:
    session = colour_session()
    assert session.loaded is not None
    options = ReportOptions(sensitivity=False, latency=False, file_sizes=False)
    path = build_and_write_report(session.loaded, None, str(tmp_path / "r.json"), options)
    header = json.loads(path.read_text(encoding="utf-8"))["header"]
    assert f"{PHOTOS} (8, unlabelled)" in header["dataset"]
    assert header["calibration_samples"] == PHOTO_COUNT and header["validation_samples"] == 0
    totals = json.loads(path.read_text(encoding="utf-8"))["totals"]
    assert totals["accuracy_float"] is None and totals["accuracy_config"] is None
