"""An ensemble opens in the app: its members are named in the model info, the layer table lists
every member's layers, and one member's layer is toggled like any model's (and undone)."""

from __future__ import annotations

from pathlib import Path

import torch
from pytestqt.qtbot import QtBot

from xnorlab.binary.modes import Mode
from xnorlab.binary.surgery import binarize_model
from xnorlab.gui.main_window import MainWindow
from xnorlab.lab.session import LabSession
from xnorlab.models.checkpoint import layer_settings, save_checkpoint
from xnorlab.models.ensemble import ensemble_card
from xnorlab.models.zoo import build_arch


def _ensemble_file(folder: Path) -> Path:
    torch.manual_seed(0)
    model = build_arch("ensemble-lenet-2")
    binarize_model(model, "paper")
    modes, configs = layer_settings(model)
    cards = [{"val_accuracy": 0.981}, {"val_accuracy": 0.975}]
    meta = {"arch": "ensemble-lenet-2", "num_classes": 10, "modes": modes,
            "layer_config": configs,
            "card": {"ensemble": ensemble_card("lenet", [4, 5], "paper", True, cards)}}  # fmt: skip
    return save_checkpoint(folder / "ens.pt", model.eval(), meta)


def test_an_ensemble_opens_lists_its_members_and_toggles_one(qtbot: QtBot, tmp_path: Path) -> None:
    session = LabSession()
    session.open_model(str(_ensemble_file(tmp_path)))
    window = MainWindow(session, panels=False)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: not window.busy(), timeout=30_000)

    assert "ensemble of 2 members" in window.model_label.text()
    tip = window.model_label.toolTip()
    assert "2 x lenet (paper), seeds 4, 5, bagging" in tip and "98.10 %" in tip
    names = session.layer_names()
    assert window.table.model.rowCount() == len(names) == 8
    assert names[:4] == ["members.0.conv1", "members.0.conv2", "members.0.fc3", "members.0.fc4"]
    assert names[4:] == ["members.1.conv1", "members.1.conv2", "members.1.fc3", "members.1.fc4"]

    session.set_mode("members.1.fc3", Mode.BWN)
    modes = session.modes()
    assert modes["members.1.fc3"] is Mode.BWN and modes["members.0.fc3"] is Mode.XNOR
    with torch.no_grad():
        scores = session.model(torch.zeros(2, 1, 28, 28))
    assert scores.shape == (2, 10) and torch.allclose(scores.exp().sum(1), torch.ones(2))
    session.undo()
    assert session.modes()["members.1.fc3"] is Mode.XNOR
    session.apply_preset("float")
    assert set(session.modes().values()) == {Mode.FLOAT}
    session.apply_preset("paper")  # each member's own first and last layer stay float
    assert session.modes()["members.1.conv1"] is Mode.FLOAT
    assert session.modes()["members.1.conv2"] is Mode.XNOR
