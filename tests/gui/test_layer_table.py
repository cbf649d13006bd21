"""Layer table: both directions (combo -> session/model, session -> table), stats, latency."""

from __future__ import annotations

import math

import pytest
import torch
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QIcon
from PySide6.QtWidgets import QComboBox
from pytestqt.qtbot import QtBot
from torch import nn

from xnorlab.binary.modes import Mode
from xnorlab.binary.stats import NONNEGATIVE_INPUT_HINT
from xnorlab.common.errors import XnorlabError
from xnorlab.gui import style
from xnorlab.gui.layer_table import COL, DASH, LayerTable, cost_text
from xnorlab.lab.session import LabSession
from xnorlab.measure.sensitivity import measure_sensitivity
from xnorlab.models.loaded import LoadedModel

WAIT_MS = 20_000


class TinyAttention(nn.Module):
    """A linear embedding, one attention block (its ``out_proj`` is used by its weight, not
    its forward, so it cannot be binarized) and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(8, 16)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x.flatten(1, 2))
        mixed, _ = self.attn(tokens, tokens, tokens)
        return self.head(mixed.mean(dim=1))


@pytest.fixture
def table(qtbot: QtBot, tiny_session: LabSession) -> LayerTable:
    widget = LayerTable(tiny_session)
    qtbot.addWidget(widget)
    widget.resize(1200, 300)
    widget.show()
    qtbot.waitUntil(lambda: not widget.busy(), timeout=WAIT_MS)
    return widget


def mode_combo(table: LayerTable, row: int) -> QComboBox:
    editor = table.view.indexWidget(table.view_index(row, COL["mode"]))
    assert isinstance(editor, QComboBox)
    return editor


def cell(table: LayerTable, row: int, key: str) -> str:
    return str(table.model.index(row, COL[key]).data(Qt.ItemDataRole.DisplayRole))


def test_rows_describe_the_layers(table: LayerTable) -> None:
    session = table.session
    assert table.model.rowCount() == 4
    assert [cell(table, r, "name") for r in range(4)] == session.layer_names()
    assert cell(table, 0, "shape") == "4\u00d71\u00d73\u00d73"
    assert cell(table, 0, "params") == f"{4 * 9 + 4}"
    assert cell(table, 1, "macs") == "13.82 k"  # 8 * 8 * 6 * 4 * 9 = 13,824
    tip = table.model.index(1, COL["macs"]).data(Qt.ItemDataRole.ToolTipRole)
    assert tip.endswith(": 13,824")
    assert [mode_combo(table, r).currentText() for r in range(4)] == ["float"] * 4


def test_combo_changes_the_session_and_the_model(table: LayerTable) -> None:
    session = table.session
    x = session.sample_batch(4)[0]
    with torch.no_grad():
        before = session.model(x)
    combo = mode_combo(table, 1)
    combo.setCurrentIndex(combo.findText("xnor"))
    combo.activated.emit(combo.currentIndex())
    name = session.layer_names()[1]
    assert session.layer(name).mode is Mode.XNOR
    assert cell(table, 1, "mode") == "xnor"
    with torch.no_grad():
        assert not torch.allclose(session.model(x), before)
    assert session.undo_label == f"{name} -> xnor"


def test_session_changes_update_the_table(table: LayerTable) -> None:
    session = table.session
    session.apply_preset("paper")
    assert [mode_combo(table, r).currentText() for r in range(4)] == [
        "float", "xnor", "xnor", "float",
    ]  # fmt: skip
    session.undo()
    assert [mode_combo(table, r).currentText() for r in range(4)] == ["float"] * 4
    session.redo()
    assert mode_combo(table, 2).currentText() == "xnor"


def test_refused_edit_shows_the_real_mode_again(table: LayerTable) -> None:
    errors: list[str] = []
    table.session.error.connect(errors.append)
    index = table.model.index(0, COL["mode"])
    assert not table.model.setData(index, "ternary")
    assert errors and "ternary" in errors[0]
    assert mode_combo(table, 0).currentText() == "float"


def test_statistics_columns_follow_the_modes(qtbot: QtBot, table: LayerTable) -> None:
    session = table.session
    names = session.layer_names()
    assert not table.model.stats_stale
    assert cell(table, 1, "local") == "0 (float)"
    session.set_mode(names[1], "xnor")
    assert table.model.stats_stale  # greyed until the worker is back
    qtbot.waitUntil(lambda: not table.busy(), timeout=WAIT_MS)
    row = table.model.stats[names[1]]
    assert 0.0 < row.local_error < 2.0
    assert row.alpha_min <= row.alpha_mean <= row.alpha_max
    assert float(cell(table, 1, "local")) == pytest.approx(row.local_error, rel=1e-2)
    downstream = table.model.stats[names[2]]
    assert downstream.propagated_error > 0.0  # the error of layer 1 reaches layer 2
    assert math.isclose(table.model.stats[names[0]].propagated_error, 0.0, abs_tol=1e-6)


def test_latency_columns_are_measured(qtbot: QtBot, table: LayerTable) -> None:
    names = table.session.layer_names()
    qtbot.waitUntil(lambda: len(table.model.latency) == 4, timeout=WAIT_MS)
    float_s, current_s = table.model.latency[names[0]]
    assert 0.0 < float_s < 1.0 and 0.0 < current_s < 1.0
    assert cell(table, 0, "float_ms") == f"{1000 * float_s:.3f}"


def test_selection_is_synchronised_both_ways(table: LayerTable) -> None:
    session = table.session
    names = session.layer_names()
    table.view.selectRow(2)
    assert session.selected == names[2]
    session.select(names[0])
    assert table.source_row(table.view.currentIndex()) == 0


def test_new_model_resets_the_rows(qtbot: QtBot, table: LayerTable) -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 6 * 6, 3))
    table.session.adopt(LoadedModel("other", net, (1, 8, 8)))
    assert table.model.rowCount() == 2
    assert isinstance(mode_combo(table, 1), QComboBox)
    qtbot.waitUntil(lambda: not table.busy(), timeout=WAIT_MS)
    assert set(table.model.stats) == {"0", "2"}


def test_custom_layer_class_is_listed_as_not_binarizable_with_its_reason(
    qtbot: QtBot, table: LayerTable
) -> None:
    class MyConv(nn.Conv2d):
        pass

    net = nn.Sequential(MyConv(1, 2, 3), nn.Flatten(), nn.Linear(2 * 6 * 6, 3))
    table.session.adopt(LoadedModel("custom", net, (1, 8, 8)))
    assert [info.name for info in table.model.infos] == ["2", "0"]  # switchable rows first
    assert table.model.flags(table.model.index(0, COL["mode"])) & Qt.ItemFlag.ItemIsEditable
    assert isinstance(mode_combo(table, 0), QComboBox)
    assert not table.model.flags(table.model.index(1, COL["mode"])) & Qt.ItemFlag.ItemIsEditable
    assert table.view.indexWidget(table.view_index(1, COL["mode"])) is None  # no combo
    assert cell(table, 1, "mode") == "not binarizable"
    assert cell(table, 1, "shape") == "2\u00d71\u00d73\u00d73"
    tip = table.model.index(1, COL["name"]).data(Qt.ItemDataRole.ToolTipRole)
    assert tip.startswith("0: not binarizable") and "forward of its own" in tip
    with pytest.raises(XnorlabError, match="forward of its own"):
        table.session.set_mode("0", "xnor")
    qtbot.waitUntil(lambda: not table.busy(), timeout=WAIT_MS)
    assert cell(table, 1, "flip") == DASH  # nothing is measured for it
    table.view.selectRow(table.view_index(1, 0).row())
    assert table.session.selected != "0"  # no views for a layer that cannot switch


def test_attention_out_proj_is_a_not_binarizable_row(qtbot: QtBot, table: LayerTable) -> None:
    table.session.adopt(LoadedModel("attn", TinyAttention(), (1, 8, 8)))
    names = [info.name for info in table.model.infos]
    assert names == ["embed", "head", "attn.out_proj"]
    assert table.model.editable_rows() == [0, 1]
    tip = table.model.index(2, COL["mode"]).data(Qt.ItemDataRole.ToolTipRole)
    assert "nn.MultiheadAttention uses this projection's weight directly" in tip
    assert cell(table, 2, "macs") == DASH  # its forward never runs: nothing was counted
    qtbot.waitUntil(lambda: not table.busy(), timeout=WAIT_MS)


def test_sorting_by_error_puts_the_worst_layer_first(qtbot: QtBot, table: LayerTable) -> None:
    session = table.session
    session.apply_preset("xnor")
    qtbot.waitUntil(lambda: not table.busy(), timeout=WAIT_MS)
    errors = {name: row.local_error for name, row in table.model.stats.items()}
    table.view.sortByColumn(COL["local"], Qt.SortOrder.DescendingOrder)
    shown = [table.proxy.index(r, COL["name"]).data() for r in range(4)]
    assert shown == sorted(errors, key=errors.__getitem__, reverse=True)
    worst = shown[0]
    combo = table.view.indexWidget(table.proxy.index(0, COL["mode"]))
    assert isinstance(combo, QComboBox) and combo.currentText() == "xnor"
    combo.setCurrentIndex(combo.findText("float"))
    combo.activated.emit(combo.currentIndex())
    assert session.layer(worst).mode is Mode.FLOAT  # the editor edits the row it is drawn on
    table.view.selectRow(0)
    assert session.selected == table.proxy.index(0, COL["name"]).data()
    table.view.sortByColumn(COL["name"], Qt.SortOrder.AscendingOrder)
    assert [table.proxy.index(r, COL["name"]).data() for r in range(4)] == session.layer_names()
    qtbot.waitUntil(lambda: not table.busy(), timeout=WAIT_MS)


def test_sensitivity_both_ways_on_demand_sorted_and_greyed_when_outdated(
    qtbot: QtBot, table: LayerTable
) -> None:
    session = table.session
    session.apply_preset("paper")
    qtbot.waitUntil(lambda: not table.busy(), timeout=WAIT_MS)
    assert not table.sensitivity_shown() and table.bar.isHidden()  # nothing asked yet
    expected = measure_sensitivity(session.model, session.dataset.val)  # type: ignore[union-attr]
    task = table.start_sensitivity()
    assert task is not None and table.bar.cancel_button.isVisibleTo(table)
    qtbot.waitUntil(lambda: not table.busy(), timeout=WAIT_MS)
    assert table.sensitivity_shown() and not table.bar.cancel_button.isVisibleTo(table)
    assert table.view.horizontalScrollBar().maximum() == 0  # two more columns, still in view
    names = session.layer_names()
    for row, layer in enumerate(expected.layers):
        assert layer.name == names[row]
        assert cell(table, row, "binarize") == cost_text(layer.binarize_alone)
        restore = cell(table, row, "restore")
        assert restore == (
            cost_text(layer.restore_alone) if layer.restore_alone else f"{DASH} (float)"
        )
    tip = table.model.index(1, COL["binarize"]).data(Qt.ItemDataRole.ToolTipRole)
    assert expected.layers[1].binarize_alone.verdict in tip and "+ = binarizing" in tip
    assert "24 items, seed 0" in table.bar.label.text()  # what it was measured on
    assert cost_text(expected.configured) in table.bar.label.text()
    # sortable: worst layer (largest binarize-alone cost) first
    costs = {layer.name: layer.binarize_alone.cost for layer in expected.layers}
    table.view.sortByColumn(COL["binarize"], Qt.SortOrder.DescendingOrder)
    shown = [table.proxy.index(r, COL["name"]).data() for r in range(4)]
    assert [costs[name] for name in shown] == sorted(costs.values(), reverse=True)
    # another configuration: the numbers stay, greyed, and say they are outdated
    session.apply_preset("xnor")
    assert table.model.sensitivity_stale and "earlier configuration" in table.bar.label.text()
    muted = table.model.index(1, COL["binarize"]).data(Qt.ItemDataRole.ForegroundRole)
    assert muted == QColor(style.theme().muted)
    qtbot.waitUntil(lambda: not table.busy(), timeout=WAIT_MS)


def test_sensitivity_can_be_cancelled_and_needs_data(qtbot: QtBot, table: LayerTable) -> None:
    session = table.session
    session.apply_preset("xnor")
    task = table.start_sensitivity()
    assert task is not None
    table.bar.cancel_button.click()
    qtbot.waitUntil(lambda: not table.busy(), timeout=WAIT_MS)
    assert table.bar.label.text() == "sensitivity cancelled" and not table.sensitivity_shown()
    errors: list[str] = []
    session.error.connect(errors.append)
    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(2 * 6 * 6, 3))
    session.adopt(LoadedModel("rgb", net, (3, 8, 8)))  # the tiny data no longer fits: dropped
    assert table.start_sensitivity() is None
    assert errors and "sensitivity needs labelled data" in errors[-1]
    qtbot.waitUntil(lambda: not table.busy(), timeout=WAIT_MS)


def test_an_xnor_layer_whose_input_is_never_negative_is_flagged(
    qtbot: QtBot, table: LayerTable
) -> None:
    session, widget = table.session, table
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
        nn.Flatten(), nn.Linear(4 * 8 * 8, 3),
    )  # fmt: skip
    session.adopt(LoadedModel("relu", net, (1, 8, 8), ["a", "b", "c"]))  # the data still fits
    assert session.dataset is not None
    qtbot.waitUntil(lambda: not widget.busy(), timeout=WAIT_MS)

    def flag(row: int) -> tuple[object, str]:
        index = widget.model.index(row, COL["name"])
        return index.data(Qt.ItemDataRole.DecorationRole), index.data(Qt.ItemDataRole.ToolTipRole)

    assert flag(1)[0] is None  # float: the constant input does no harm
    session.set_mode("2", "xnor")
    qtbot.waitUntil(lambda: not widget.busy(), timeout=WAIT_MS)
    icon, tip = flag(1)
    assert isinstance(icon, QIcon) and not icon.isNull()
    assert NONNEGATIVE_INPUT_HINT in tip
    name_colour = widget.model.index(1, COL["name"]).data(Qt.ItemDataRole.ForegroundRole)
    assert name_colour == QColor(style.theme().error_fg)
    session.set_mode("4", "xnor")  # its input can be negative (no ReLU before it)
    qtbot.waitUntil(lambda: not widget.busy(), timeout=WAIT_MS)
    assert flag(2)[0] is None and NONNEGATIVE_INPUT_HINT not in flag(2)[1]
