"""Layer views: filled from a worker, redrawn after each toggle, stale results dropped."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest
import torch
from pytestqt.qtbot import QtBot
from torch import nn

from xnorlab.binary.binarize import weight_scale_alpha
from xnorlab.binary.modes import Mode
from xnorlab.gui.views import LayerViews
from xnorlab.lab.layerview import MAX_VIEW_BATCH, LayerView
from xnorlab.lab.session import LabSession, whole_shares
from xnorlab.models.demo import build_demo
from xnorlab.models.loaded import LoadedModel

WAIT_MS = 20_000


@pytest.fixture
def views(qtbot: QtBot, tiny_session: LabSession) -> LayerViews:
    widget = LayerViews(tiny_session)
    qtbot.addWidget(widget)
    widget.resize(1200, 500)
    widget.show()
    return widget


def select_and_wait(qtbot: QtBot, views: LayerViews, name: str) -> LayerView:
    with qtbot.waitSignal(views.updated, timeout=WAIT_MS):
        views.session.select(name)
    assert views.current is not None
    return views.current


def curves(plot: pg.PlotWidget) -> list[pg.PlotDataItem]:
    return [item for item in plot.getPlotItem().items if isinstance(item, pg.PlotDataItem)]


def test_selecting_a_layer_fills_every_view(qtbot: QtBot, views: LayerViews) -> None:
    name = views.session.layer_names()[1]
    view = select_and_wait(qtbot, views, name)
    weight = views.session.layer(name).weight.detach()
    count = whole_shares(MAX_VIEW_BATCH, 3)  # the tiny data's three classes, equal shares
    assert view.name == name and view.sample_count == count
    np.testing.assert_allclose(view.alpha, weight_scale_alpha(weight).numpy(), rtol=1e-6)
    assert int(view.weight_hist.counts.sum()) == weight.numel()
    assert int(view.binary_hist.counts.sum()) == weight.numel()
    _, ys = curves(views.weights)[0].getData()
    assert int(np.sum(ys)) == weight.numel()  # the drawn histogram is the weights'
    bars = [i for i in views.alpha.getPlotItem().items if isinstance(i, pg.BarGraphItem)]
    assert len(bars) == 1 and len(bars[0].opts["height"]) == weight.shape[0]
    assert view.input_hist is not None and int(view.input_hist.counts.sum()) == count * 4 * 8 * 8
    assert view.kmap is not None and view.kmap.shape == (8, 8)
    assert views.kmap.kmap_item.image is not None and views.kmap.input_item.image is not None
    assert view.output is not None and view.output.preview  # float layer: XNOR what-if
    assert name in views.header.text() and "FLOAT" in views.header.text()


def test_toggle_redraws_with_the_new_mode(qtbot: QtBot, views: LayerViews) -> None:
    session = views.session
    name = session.layer_names()[1]
    before = select_and_wait(qtbot, views, name)
    scatter_before = views.output.getPlotItem().items[0].getData()[1].copy()
    with qtbot.waitSignal(views.updated, timeout=WAIT_MS):
        session.set_mode(name, "bwn")
    after = views.current
    assert after is not None and after.mode is Mode.BWN
    assert after.output is not None and not after.output.preview
    assert after.output.mode is Mode.BWN
    assert after.output.relative_error != pytest.approx(before.output.relative_error)
    scatter_after = views.output.getPlotItem().items[0].getData()[1]
    assert not np.allclose(scatter_before, scatter_after)
    assert "BWN" in views.header.text()


def test_upstream_toggle_changes_the_input_statistics(qtbot: QtBot, views: LayerViews) -> None:
    session = views.session
    first, second = session.layer_names()[:2]
    before = select_and_wait(qtbot, views, second)
    assert before.sign is not None and before.sign.flip_rate == 0.0
    with qtbot.waitSignal(views.updated, timeout=WAIT_MS):
        session.set_mode(first, "xnor")
    after = views.current
    assert after is not None and after.sign is not None and after.sign.flip_rate > 0.0


def test_burst_of_changes_shows_only_the_last_state(qtbot: QtBot, views: LayerViews) -> None:
    session = views.session
    name = session.layer_names()[1]
    select_and_wait(qtbot, views, name)
    drawn: list[LayerView] = []
    views.updated.connect(drawn.append)
    for mode in ("xnor", "bwn", "float", "xnor", "bwn"):
        session.set_mode(name, mode)
    qtbot.waitUntil(lambda: not views.busy(), timeout=WAIT_MS)
    assert drawn and all(view.mode is Mode.BWN for view in drawn)
    assert views.current is not None and views.current.mode is Mode.BWN


def test_update_after_toggle_is_fast_on_a_small_model(qtbot: QtBot, views: LayerViews) -> None:
    session = views.session
    name = session.layer_names()[1]
    select_and_wait(qtbot, views, name)
    with qtbot.waitSignal(views.updated, timeout=WAIT_MS):
        session.set_mode(name, "xnor")
    # a loose bound: it catches a view that stalls, not one slower on a shared machine
    assert 0.0 < views.last_update_ms < 1000.0


def test_without_usable_inputs_only_weights_are_shown(qtbot: QtBot) -> None:
    # a 2-channel input: no dataset is open and the calibration photos cannot feed it
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))
    session = LabSession()
    session.adopt(LoadedModel("two-channel", net, (2, 8, 8), ["a", "b", "c"]))
    views = LayerViews(session)
    qtbot.addWidget(views)
    view = select_and_wait(qtbot, views, session.layer_names()[0])
    assert view.sample_count == 0 and view.input_hist is None and view.output is None
    assert "open a dataset" in views.activations.getPlotItem().titleLabel.text
    assert "open a dataset" in views.header.text()
    assert len(curves(views.weights)) == 2


def test_linear_layer_has_beta_instead_of_a_kmap(qtbot: QtBot, views: LayerViews) -> None:
    view = select_and_wait(qtbot, views, views.session.layer_names()[2])
    assert view.kind == "linear" and view.kmap is None and view.beta is not None and view.beta > 0
    assert "beta" in views.kmap.kmap_label.text


def test_in_place_weight_change_is_redrawn(qtbot: QtBot, views: LayerViews) -> None:
    session = views.session
    first, second = session.layer_names()[:2]
    before = select_and_wait(qtbot, views, second)
    with torch.no_grad():
        session.layer(second).weight.mul_(2.0)
        session.layer(first).weight.mul_(-1.0)  # changes the float input of the second layer
    with qtbot.waitSignal(views.updated, timeout=WAIT_MS):
        session.mark_weights_changed()
    after = views.current
    assert after is not None
    np.testing.assert_allclose(after.alpha, 2.0 * before.alpha, rtol=1e-5)
    assert after.sign is not None and after.sign.flip_rate == 0.0  # float reference recomputed
    assert after.input_hist is not None and before.input_hist is not None
    assert not np.array_equal(after.input_hist.counts, before.input_hist.counts)


def test_on_a_class_sorted_set_the_views_say_they_see_every_class(qtbot: QtBot) -> None:
    """mnist5k's validation split is sorted by class (its first 20 items are zeros): the views
    run on a stratified sample and their header, summary and caption say what it holds."""
    session = LabSession()
    names = [str(d) for d in range(10)]
    session.adopt(LoadedModel("lenet", build_demo("lenet"), (1, 28, 28), names))
    session.open_dataset("mnist5k")
    views = LayerViews(session)
    qtbot.addWidget(views)
    views.resize(1200, 500)
    views.show()
    view = select_and_wait(qtbot, views, session.layer_names()[1])
    held = "mnist5k, 20 items, seed 0, 2 per class (10 classes)"
    assert view.sample_count == 20
    assert held in views.header.text() and held in views.summary.text()
    assert views.source.labels is not None
    first = str(int(views.source.labels[0]))
    assert views.kmap.input_label.text == f"sample 1 of 20: {first}"
