"""Open-model / open-data dialogs and the worker-backed opener with the trust question."""

from __future__ import annotations

import pytest
import torch
from panel_support import lenet_session
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QWidget

from xnorlab.gui.panels import open_dialogs
from xnorlab.gui.panels.open_dialogs import (
    DATA_CHOICES,
    OpenDataDialog,
    Opener,
    OpenModelDialog,
    declined_text,
)
from xnorlab.models.checkpoint import save_checkpoint
from xnorlab.models.demo import build_demo

pytestmark = pytest.mark.gui


@pytest.fixture
def host(qtbot):  # type: ignore[no-untyped-def]
    widget = QWidget()
    qtbot.addWidget(widget)
    return widget


def _wait(opener: Opener, qtbot) -> None:  # type: ignore[no-untyped-def]
    qtbot.waitUntil(lambda: opener.runner.active == 0, timeout=30_000)


@pytest.fixture
def pickled_model(tmp_path):  # type: ignore[no-untyped-def]
    path = tmp_path / "whole.pt"
    torch.save(build_demo("lenet"), path)  # a full pickle: needs trust
    return path


def test_pickle_asks_for_trust_and_no_keeps_the_model(host, qtbot, pickled_model) -> None:  # type: ignore[no-untyped-def]
    session = lenet_session(with_data=False)
    asked: list[str] = []
    errors: list[str] = []
    session.error.connect(errors.append)
    opener = Opener(session, host, ask=lambda _parent, spec: asked.append(spec) or False)
    opener.open_model(str(pickled_model))
    _wait(opener, qtbot)
    assert asked == [str(pickled_model)]
    assert session.model_name == "test:lenet"
    assert errors == [declined_text(str(pickled_model))]
    assert "--" not in errors[0] and "whole.pt was not opened" in errors[0]


def test_trusted_pickle_becomes_the_model(host, qtbot, pickled_model) -> None:  # type: ignore[no-untyped-def]
    session = lenet_session(with_data=False)
    opener = Opener(session, host, ask=lambda _parent, _spec: True)
    opener.open_model(str(pickled_model))
    _wait(opener, qtbot)
    _wait(opener, qtbot)  # the trusted second load
    assert session.model_name == str(pickled_model)
    assert session.layer_names() == ["conv1", "conv2", "fc3", "fc4"]


def test_safe_checkpoints_load_without_asking(host, qtbot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = save_checkpoint(tmp_path / "lenet.pt", build_demo("lenet"), {"arch": "lenet"})
    session = lenet_session()  # digits fit: no default dataset is loaded
    opener = Opener(session, host, ask=lambda *_: pytest.fail("asked for a safe file"))
    opener.open_model(str(path))
    _wait(opener, qtbot)
    assert session.model_name == str(path)


def test_dataset_is_loaded_in_the_models_format(host, qtbot) -> None:  # type: ignore[no-untyped-def]
    session = lenet_session(with_data=False)
    opener = Opener(session, host)
    opener.open_dataset("digits")
    _wait(opener, qtbot)
    assert session.dataset_spec == "digits"
    assert session.sample_batch(4)[0].shape == (4, 1, 28, 28)


def test_model_dialog_specs_and_incomplete_choices(qtbot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    dialog = OpenModelDialog()
    qtbot.addWidget(dialog)
    assert dialog.spec().startswith("demo:")
    assert dialog.demo_info.text()  # the selected demo's card (or a clear "no card")
    vgg = dialog.demo_list.findItems("demo:vgg", Qt.MatchFlag.MatchExactly)[0]
    dialog.demo_list.setCurrentItem(vgg)
    assert "random initialisation" in dialog.demo_info.text()
    dialog.tabs.setCurrentIndex(1)
    dialog.arch_filter.setText("resnet18")
    visible = [dialog.arch_list.item(i) for i in range(dialog.arch_list.count())
               if not dialog.arch_list.item(i).isHidden()]  # fmt: skip
    assert [item.text() for item in visible] == ["resnet18"]
    dialog.arch_list.setCurrentItem(visible[0])
    dialog.weights_edit.setText("/w/r18.pth")
    assert dialog.spec() == "resnet18:/w/r18.pth"
    dialog.tabs.setCurrentIndex(2)
    dialog.accept()  # no file chosen: stays open with a message
    assert dialog.result() != QDialog.DialogCode.Accepted
    assert "checkpoint file" in dialog.message.text()
    dialog.file_edit.setText(str(tmp_path / "m.pt"))
    assert dialog.spec() == str(tmp_path / "m.pt")


def test_data_dialog_specs(qtbot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    dialog = OpenDataDialog()
    qtbot.addWidget(dialog)
    keys = [choice.key for choice in DATA_CHOICES]
    assert dialog.spec() == "mnist5k" and not dialog.path_row.isEnabled()
    dialog.kind.setCurrentIndex(keys.index("cifar10"))
    assert dialog.path_row.isEnabled()
    dialog.accept()
    assert "choose a folder" in dialog.message.text()
    dialog.path_edit.setText(str(tmp_path))
    assert dialog.spec() == f"cifar10:{tmp_path}"
    dialog.kind.setCurrentIndex(keys.index(""))
    assert dialog.spec() == str(tmp_path)
    dialog.path_edit.setText(str(tmp_path / "missing"))
    dialog.accept()
    assert "not a folder" in dialog.message.text()


def test_open_model_dialog_loads_the_choice(host, qtbot, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def choose_vgg(dialog: OpenModelDialog) -> QDialog.DialogCode:
        dialog.demo_list.setCurrentItem(
            dialog.demo_list.findItems("demo:vgg", Qt.MatchFlag.MatchExactly)[0]
        )
        return QDialog.DialogCode.Accepted

    monkeypatch.setattr(OpenModelDialog, "exec", choose_vgg)
    session = lenet_session(with_data=False)
    task = open_dialogs.open_model_dialog(session, host)
    assert task is not None
    _wait(open_dialogs.opener_for(session, host), qtbot)
    assert session.model_name == "demo:vgg"
    assert session.input_shape == (3, 32, 32)


def test_random_bytes_are_corrupt_not_a_pickle_to_trust(host, qtbot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    junk = tmp_path / "random.pt"
    junk.write_bytes(bytes(range(256)) * 40)  # starts with 0x00: no zip, safetensors or pickle
    proto = tmp_path / "proto.pt"
    proto.write_bytes(b"\x80\x02" + bytes(range(7, 250)) * 20)  # a pickle header, then garbage
    session = lenet_session(with_data=False)
    errors: list[str] = []
    session.error.connect(errors.append)
    opener = Opener(session, host, ask=lambda *_: pytest.fail("asked to trust a corrupt file"))
    for path in (junk, proto):
        opener.open_model(str(path))
        _wait(opener, qtbot)
    assert len(errors) == 2
    for text, path in zip(errors, (junk, proto), strict=True):
        assert path.name in text and "corrupt" in text.lower(), text
        assert "pickle" not in text.lower() and "trust" not in text.lower(), text
    assert session.model_name == "test:lenet"


def test_a_pickled_weights_file_after_an_architecture_asks_too(host, qtbot, pickled_model) -> None:  # type: ignore[no-untyped-def]
    session = lenet_session(with_data=False)
    asked: list[str] = []
    opener = Opener(session, host, ask=lambda _parent, spec: asked.append(spec) or False)
    opener.open_model(f"lenet:{pickled_model}")
    _wait(opener, qtbot)
    assert asked == [f"lenet:{pickled_model}"]
    assert session.model_name == "test:lenet"


def test_filtering_to_one_architecture_chooses_it_and_enter_opens(qtbot) -> None:  # type: ignore[no-untyped-def]
    dialog = OpenModelDialog()
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.tabs.setCurrentIndex(1)
    dialog.arch_filter.setFocus()
    qtbot.keyClicks(dialog.arch_filter, "resnet18")
    assert dialog.spec() == "resnet18"  # no click on the single match
    qtbot.keyClick(dialog.arch_filter, Qt.Key.Key_Return)
    assert dialog.result() == QDialog.DialogCode.Accepted
    again = OpenModelDialog()
    qtbot.addWidget(again)
    again.tabs.setCurrentIndex(1)
    again.arch_filter.setText("resnet")  # several matches: the first one is chosen
    assert again.spec().startswith("resnet")
    again.arch_filter.setText("no such net")
    assert again.arch_list.currentItem() is None


NET = """
from torch import nn


class Net(nn.Sequential):
    input_shape = (1, 8, 8)

    def __init__(self, width=4):
        super().__init__(nn.Conv2d(1, width, 3), nn.Flatten(), nn.Linear(width * 36, 3))
"""


def test_your_code_tab_opens_a_class_with_its_options(host, qtbot, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "net.py").write_text(NET)

    def choose_code(dialog: OpenModelDialog) -> QDialog.DialogCode:
        dialog.tabs.setCurrentIndex(dialog.code_tab)
        dialog.code_edit.setText(str(tmp_path / "net.py"))
        dialog.class_edit.setText("Net")
        dialog.kwargs_edit.setText('{"width": 2}')
        return QDialog.DialogCode.Accepted

    monkeypatch.setattr(OpenModelDialog, "exec", choose_code)
    session = lenet_session(with_data=False)
    assert open_dialogs.open_model_dialog(session, host) is not None
    _wait(open_dialogs.opener_for(session, host), qtbot)
    assert session.model_name == f"{tmp_path / 'net.py'}:Net"
    assert session.input_shape == (1, 8, 8) and session.model[0].out_channels == 2


def test_your_code_tab_says_it_runs_the_code_and_refuses_incomplete_choices(tmp_path) -> None:  # type: ignore[no-untyped-def]
    dialog = OpenModelDialog()
    dialog.tabs.setCurrentIndex(dialog.code_tab)
    assert "imports and runs this Python file" in open_dialogs.CODE_NOTE
    dialog.accept()
    assert "choose a Python file (or module) and the class in it" in dialog.message.text()
    dialog.code_edit.setText(str(tmp_path / "net.py"))
    dialog.class_edit.setText("Net")
    dialog.shape_edit.setText("1,8")
    dialog.accept()
    assert dialog.message.text().startswith("input shape: the input shape must be C,H,W")
    dialog.shape_edit.setText("1,8,8")
    dialog.kwargs_edit.setText("[2]")
    dialog.accept()
    assert dialog.message.text().startswith("keyword arguments: the value must be a JSON object")
    dialog.kwargs_edit.setText("")
    assert dialog.spec() == f"{tmp_path / 'net.py'}:Net"
    assert dialog.code_options() == open_dialogs.CodeOptions(input_shape=(1, 8, 8))


def test_the_binary_resnets_are_offered_beside_the_demos(qtbot) -> None:  # type: ignore[no-untyped-def]
    dialog = OpenModelDialog()
    qtbot.addWidget(dialog)
    for spec, shape in (("xresnet18", "3x224x224"), ("xresnet18-small", "1x28x28")):
        item = dialog.demo_list.findItems(spec, Qt.MatchFlag.MatchExactly)[0]
        dialog.demo_list.setCurrentItem(item)
        assert dialog.spec() == spec
        assert "binary ResNet-18" in dialog.demo_info.text() and shape in dialog.demo_info.text()
