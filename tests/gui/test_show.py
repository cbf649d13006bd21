"""``xnorlab.show``: the lab on a live module - a copy unless inplace, data as tensors, a Dataset
or a DataLoader, no accuracy without labels, one clear error for bad inputs, and no Qt at
``import xnorlab``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication, QMainWindow
from pytestqt.qtbot import QtBot
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import xnorlab
from xnorlab.binary.layers import BinarizableLayer
from xnorlab.binary.modes import Mode
from xnorlab.common.errors import XnorlabError
from xnorlab.gui.main_window import MainWindow

pytestmark = pytest.mark.gui

SHAPE = (1, 8, 8)


def small_net() -> nn.Module:
    """Three binarizable layers, three classes, BatchNorm before each sign."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Hardtanh(),
        nn.Conv2d(4, 4, 3, padding=1), nn.Flatten(), nn.BatchNorm1d(4 * 64),
        nn.Linear(4 * 64, 3),
    ).eval()  # fmt: skip


def tensors(count: int = 30) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(count, *SHAPE, generator=generator), torch.arange(count) % 3


class InputsOnly(Dataset[Tensor]):
    """A data set of inputs without labels."""

    def __init__(self, inputs: Tensor) -> None:
        self.inputs = inputs

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> Tensor:
        return self.inputs[index]


def _opened(qtbot: QtBot, window: QMainWindow) -> MainWindow:
    assert isinstance(window, MainWindow)
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: not window.busy(), timeout=60_000)
    return window


def _output(model: nn.Module, inputs: Tensor) -> Tensor:
    with torch.no_grad():
        return model(inputs)


def test_the_lab_works_on_a_copy_and_the_callers_model_stays_as_it_was(qtbot: QtBot) -> None:
    model, (inputs, labels) = small_net(), tensors()
    before = _output(model, inputs)
    window = _opened(qtbot, xnorlab.show(model, (inputs, labels), block=False))
    session = window.session
    assert window.isVisible() and session.model is not model
    assert session.model_name == "live:Sequential" and session.class_names == ["0", "1", "2"]
    session.apply_preset("xnor")
    assert {str(mode) for mode in session.modes().values()} == {"xnor"}
    assert not any(isinstance(m, BinarizableLayer) for m in model.modules())
    assert torch.equal(_output(model, inputs), before)
    assert not torch.allclose(_output(session.model, inputs), before)


def test_inplace_switches_the_callers_own_layers(qtbot: QtBot) -> None:
    model, (inputs, labels) = small_net(), tensors()
    before = _output(model, inputs)
    window = _opened(qtbot, xnorlab.show(model, (inputs, labels), inplace=True, block=False))
    assert window.session.model is model
    window.session.set_mode("3", Mode.XNOR)
    assert model[3].mode is Mode.XNOR  # the caller's module tree was wrapped and switched
    assert not torch.allclose(_output(model, inputs), before)


def test_labelled_data_are_split_by_the_labs_rule_and_give_accuracy(qtbot: QtBot) -> None:
    inputs, labels = tensors(60)
    window = _opened(qtbot, xnorlab.show(small_net(), (inputs, labels), block=False))
    bundle = window.session.dataset
    assert bundle is not None and bundle.info["labelled"] is True
    assert (len(bundle.train), len(bundle.val)) == (48, 12)  # 80 % train in every class
    metrics = window.panels["metrics"]
    qtbot.waitUntil(lambda: metrics.accuracy is not None, timeout=60_000)
    assert metrics.accuracy.samples == 12 and metrics.current_acc.text()


def test_without_labels_there_are_statistics_but_no_accuracy(qtbot: QtBot) -> None:
    inputs, _ = tensors(20)
    window = _opened(qtbot, xnorlab.show(small_net(), (inputs, None), block=False))
    session = window.session
    assert session.dataset is not None and session.dataset.info["labelled"] is False
    assert len(session.dataset.val) == 0 and len(session.dataset.train) == 20
    drawn = session.activation_inputs(8)  # the views run on the caller's own inputs
    assert drawn.batch is not None and len(drawn.batch) > 0
    assert all(any(torch.equal(row, x) for x in inputs) for row in drawn.batch)
    assert drawn.label_of(0) == ""  # no class is made up for an unlabelled input
    metrics = window.panels["metrics"]
    qtbot.wait(200)
    qtbot.waitUntil(lambda: not window.busy(), timeout=60_000)
    assert metrics.accuracy is None and "%" not in metrics.current_acc.text()
    assert "no accuracy" in window.session.dataset_spec
    assert metrics.acc_message.text().startswith("the data have no labels: no accuracy")


@pytest.mark.parametrize(
    "data",
    [
        DataLoader(TensorDataset(*tensors(20)), batch_size=4),
        TensorDataset(*tensors(20)),
        InputsOnly(tensors(20)[0]),
        tensors(20)[0],
    ],
    ids=["dataloader", "dataset", "dataset-without-labels", "X-alone"],
)
def test_datasets_loaders_and_bare_inputs(qtbot: QtBot, data: object) -> None:
    window = _opened(qtbot, xnorlab.show(small_net(), data, block=False))
    bundle = window.session.dataset
    assert bundle is not None and len(bundle.train) + len(bundle.val) == 20
    assert bundle.info["labelled"] is isinstance(data, (DataLoader, TensorDataset))
    assert window.session.input_shape == SHAPE


def test_the_shape_comes_from_example_input_and_names_from_class_names(qtbot: QtBot) -> None:
    example = torch.zeros(2, *SHAPE)
    names = ["cat", "dog", "bird"]
    window = _opened(
        qtbot, xnorlab.show(small_net(), example_input=example, class_names=names, block=False)
    )
    assert window.session.input_shape == SHAPE and window.session.class_names == names
    assert window.session.dataset is None


def test_a_live_model_is_not_remembered_as_the_last_model(qtbot: QtBot) -> None:
    _opened(qtbot, xnorlab.show(small_net(), tensors(), block=False))
    assert QSettings().value("last_model", None) is None
    store = QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "xnorlab", "xnorlab")
    assert store.value("last_model", None) is None


BLOCKING_SCRIPT = """
import sys, threading, torch
from torch import nn
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
import xnorlab
from xnorlab.gui.main_window import MainWindow

model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 36, 3)).eval()
hook, shown = sys.excepthook, []

def close_soon():
    windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow)]
    shown.append(any(w.isVisible() for w in windows))
    QApplication.instance().quit()

app = QApplication(sys.argv[:1])
QTimer.singleShot(300, close_soon)
window = xnorlab.show(model, example_input=torch.zeros(1, 8, 8), block=True)
print("shown", shown, "main window", window.inherits("QMainWindow"), "hook back", sys.excepthook is hook)
"""


def test_block_runs_the_event_loop_until_the_app_quits() -> None:
    # in its own interpreter, as a script uses it: the loop ends the application, which must
    # not end the event loop of the test session that runs the other GUI tests
    done = subprocess.run(
        [sys.executable, "-c", BLOCKING_SCRIPT], capture_output=True, text=True, timeout=180,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "shown [True] main window True hook back True" in done.stdout


BAD = [
    ({"model": "resnet18"}, "xnorlab.show needs a torch nn.Module, got str"),
    ({"data": (tensors()[0], tensors()[1][:5])}, "X has 30 items but y has 5 labels"),
    ({"data": (tensors()[0], tensors()[1].float())}, "y must hold integer class labels"),
    ({"data": (tensors()[0], tensors()[1] + 3)}, "the labels hold class 3 but the model gives 3"),
    ({"data": (tensors()[0].long(), tensors()[1])}, "X must be a float tensor of inputs"),
    ({"data": {"x": 1}}, "data must be a torch Dataset, a DataLoader or an (X, y) pair"),
    ({"example_input": torch.zeros(8, 8)}, "example_input must be one input (C, H, W) or a"),
    (
        {"example_input": torch.zeros(1, 9, 9), "data": tensors()},
        "example_input has the shape (1, 9, 9) but the data's inputs (1, 8, 8)",
    ),
    ({}, "give example_input (one input) or data"),
    ({"data": tensors(), "class_names": ["a", "b"]}, "it names 2 classes but the model outputs 3"),
]


@pytest.mark.parametrize(("arguments", "expected"), BAD, ids=[b[1][:30] for b in BAD])
def test_bad_inputs_are_one_clear_error(arguments: dict, expected: str) -> None:
    given = {"model": small_net(), **arguments}
    with pytest.raises(XnorlabError) as caught:
        xnorlab.show(given.pop("model"), **given, block=False)
    message = str(caught.value)
    assert expected in message and "\n" not in message, message
    assert not [
        w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()
    ]


def test_import_xnorlab_does_not_load_qt() -> None:
    code = "import sys, xnorlab; xnorlab.show; print('PySide6' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "False"
