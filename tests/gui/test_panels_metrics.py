"""MetricsPanel: accuracy off the GUI thread, numbers equal to the core functions, stale runs
dropped, cancel, memory and the latency chart."""

from __future__ import annotations

import threading

import pytest
from panel_support import lenet_session, wait_until_idle
from PySide6.QtCore import QRunnable, QThreadPool
from torch import nn

import xnorlab.gui.panels.metrics as metrics_module
import xnorlab.measure.latency as latency_module
from xnorlab.binary.surgery import float_mode
from xnorlab.gui.panels.formatting import format_bytes, format_percent
from xnorlab.gui.panels.metrics import MetricsPanel, speedup_texts
from xnorlab.gui.style import Tone, tone_of
from xnorlab.measure.evaluate import evaluate
from xnorlab.measure.memory import model_memory
from xnorlab.measure.timing import RatioEstimate
from xnorlab.models.loaded import LoadedModel

pytestmark = pytest.mark.gui


@pytest.fixture
def panel(qtbot):  # type: ignore[no-untyped-def]
    session = lenet_session("paper")
    widget = MetricsPanel(session)
    qtbot.addWidget(widget)
    widget.auto_latency.setChecked(False)  # latency has its own test
    yield widget
    widget.shutdown()


def _top1(session, floating: bool) -> float:  # type: ignore[no-untyped-def]
    model, val = session.model, session.dataset.val
    if floating:
        with float_mode(model):
            return evaluate(model, val, session.class_names).top1
    return evaluate(model, val, session.class_names).top1


def test_accuracy_runs_off_the_gui_thread_and_matches_evaluate(panel, qtbot) -> None:  # type: ignore[no-untyped-def]
    wait_until_idle(panel, qtbot)
    task = panel.accuracy_task
    assert task is not None and task.worker_thread_id is not None
    assert task.worker_thread_id != threading.get_ident()
    report = panel.accuracy
    assert report is not None and report.samples == len(panel.session.dataset.val)
    assert report.float_top1 == pytest.approx(_top1(panel.session, floating=True))
    assert report.current_top1 == pytest.approx(_top1(panel.session, floating=False))
    assert panel.current_acc.text() == format_percent(report.current_top1)


def test_mode_changes_are_debounced_and_stale_results_dropped(panel, qtbot) -> None:  # type: ignore[no-untyped-def]
    wait_until_idle(panel, qtbot)
    runs: list[int] = []
    shown: list[object] = []
    recompute, show = panel.recompute, panel._show_accuracy
    panel._timer.timeout.disconnect()
    panel._timer.timeout.connect(lambda: (runs.append(1), recompute()))
    panel._show_accuracy = lambda report, *rest: (shown.append(report), show(report, *rest))
    session = panel.session
    for preset in ("xnor", "bwn", "float", "paper-bwn"):
        session.apply_preset(preset)
    wait_until_idle(panel, qtbot)
    assert len(runs) == 1  # one run for the burst of four changes
    assert len(shown) == 1
    assert panel.accuracy.current_top1 == pytest.approx(_top1(session, floating=False))
    assert panel.accuracy.float_reused  # weights unchanged: the float pass is cached
    # a run overtaken by a change made while it runs never reaches the labels
    panel.recompute()
    session.apply_preset("xnor")
    wait_until_idle(panel, qtbot)
    assert panel.accuracy is not None and panel.accuracy in shown
    assert panel.accuracy.current_top1 == pytest.approx(_top1(session, floating=False))


def test_cancel_stops_the_run_and_shows_nothing_new(panel, qtbot) -> None:  # type: ignore[no-untyped-def]
    wait_until_idle(panel, qtbot)
    before = panel.accuracy
    panel.samples_spin.setValue(50)
    panel.recompute()
    panel.cancel()
    wait_until_idle(panel, qtbot)
    assert panel.accuracy is before
    assert panel.acc_message.text() == "cancelled"


def test_values_are_greyed_until_the_new_run_lands(panel, qtbot) -> None:  # type: ignore[no-untyped-def]
    wait_until_idle(panel, qtbot)
    assert tone_of(panel.current_acc) is Tone.NORMAL and panel.current_acc.font().bold()
    panel.session.apply_preset("xnor")
    assert tone_of(panel.current_acc) is Tone.MUTED
    wait_until_idle(panel, qtbot)
    assert tone_of(panel.current_acc) is Tone.NORMAL


def test_memory_matches_the_core_and_follows_modes(panel, qtbot) -> None:  # type: ignore[no-untyped-def]
    session = panel.session
    expected = model_memory(session.model)
    assert panel.packed_mem.text() == format_bytes(expected.packed_bytes)
    session.apply_preset("float")
    assert panel.packed_mem.text() == panel.float_mem.text()
    assert panel.memory.ratio == 1.0
    wait_until_idle(panel, qtbot)


def test_latency_report_fills_the_split_chart(panel, qtbot) -> None:  # type: ignore[no-untyped-def]
    wait_until_idle(panel, qtbot)
    panel.start_latency()
    wait_until_idle(panel, qtbot)
    report = panel.latency
    assert report is not None
    assert [layer.name for layer in report.layers] == panel.session.layer_names()
    assert report.float_s > 0 and report.current_s > 0
    totals = panel.chart.stacked_totals_s()
    rest = [report.current_unattributed_s]  # the last row: the time no layer accounts for
    assert totals == pytest.approx([layer.current_s for layer in report.layers] + rest)
    assert sum(totals) == pytest.approx(report.current_s)  # the bars add up to the median
    assert sum(panel.chart.float_totals_s()) == pytest.approx(report.float_s)
    assert panel.chart.layer_names == panel.session.layer_names()
    assert "not in any layer" in panel.chart.legend_label.text()
    assert report.engine in panel.engine_label.text()
    # the current side ran as xnorlab.deploy prepared it, and the panel says how
    assert report.comparison.deployed is not None
    assert report.comparison.deploy_text() in panel.engine_label.text()
    assert "deploy: fused chains" in panel.text()
    panel.session.adopt(panel.session.loaded)  # a (re)opened model: the old chart goes
    assert panel.chart.layer_names == []
    wait_until_idle(panel, qtbot)


def test_no_dataset_means_a_hint_not_an_error(qtbot) -> None:  # type: ignore[no-untyped-def]
    widget = MetricsPanel(lenet_session("paper", with_data=False))
    qtbot.addWidget(widget)
    widget.auto_latency.setChecked(False)
    wait_until_idle(widget, qtbot)
    assert "open a dataset" in widget.acc_message.text()
    assert widget.accuracy is None
    widget.shutdown()


def test_auto_latency_waits_for_other_workers(qtbot) -> None:  # type: ignore[no-untyped-def]
    release = threading.Event()

    class Blocker(QRunnable):
        def run(self) -> None:
            release.wait(10)

    QThreadPool.globalInstance().start(Blocker())  # another view's worker, still running
    widget = MetricsPanel(lenet_session("paper"))
    qtbot.addWidget(widget)
    try:
        qtbot.waitUntil(lambda: widget.accuracy is not None, timeout=30_000)
        qtbot.wait(400)
        assert widget.latency_task is None and widget.busy()  # waiting for quiet
    finally:
        release.set()
    wait_until_idle(widget, qtbot)
    assert widget.latency is not None
    widget.shutdown()


def test_a_new_model_without_data_shows_no_old_numbers(panel, qtbot) -> None:  # type: ignore[no-untyped-def]
    panel.auto_latency.setChecked(True)
    wait_until_idle(panel, qtbot)
    assert panel.current_acc.text() != "—" and panel.float_lat.text() != "—"
    other = LoadedModel("other", nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(),
                                               nn.Linear(4 * 6 * 6, 2)), (3, 8, 8))  # fmt: skip
    panel.session.adopt(other)  # another input shape: the digits are dropped
    assert panel.session.dataset is None
    wait_until_idle(panel, qtbot)
    assert panel.accuracy is None
    for label in (panel.float_acc, panel.current_acc, panel.acc_drop):
        assert label.text() == "—"
    assert "open a dataset" in panel.acc_message.text()
    assert panel.latency is not None and panel.latency.layers[0].name == "0"  # the new model's


def test_accuracy_shows_n_intervals_and_a_paired_cost_with_its_verdict(panel, qtbot) -> None:  # type: ignore[no-untyped-def]
    wait_until_idle(panel, qtbot)
    report = panel.accuracy
    assert report is not None and report.comparison is not None
    n = report.samples
    for label, accuracy in ((panel.float_interval, report.float_accuracy),
                            (panel.current_interval, report.current_accuracy)):  # fmt: skip
        low, high = accuracy.interval
        assert label.text() == f"[{100 * low:.1f}, {100 * high:.1f}] (n={n:,})"
        assert low <= accuracy.value <= high
    cost = report.comparison.cost
    assert cost == pytest.approx(report.float_top1 - report.current_top1)
    assert panel.acc_drop.text() == f"{100 * cost:+.2f} pts"
    low, high = report.comparison.interval
    assert panel.drop_interval.text() == f"[{100 * low:+.2f}, {100 * high:+.2f}]"
    assert panel.acc_verdict.text() == report.comparison.verdict
    assert report.sample.text(panel.session.class_names) in panel.acc_message.text()
    assert "digits-small" in panel.acc_message.text()
    # a mode change reuses the cached float scores and stays paired on the same items
    panel.session.apply_preset("xnor")
    wait_until_idle(panel, qtbot)
    again = panel.accuracy
    assert again is not report and again.float_reused and again.comparison is not None
    assert again.float_correct == report.float_correct
    assert again.comparison.n == n and again.float_top1 == report.float_top1


def test_the_speed_up_shows_a_direction_only_when_its_interval_excludes_one() -> None:
    same = RatioEstimate(median=0.995, low=0.98, high=1.01, rounds=40, confidence=0.99)
    value, detail = speedup_texts(same)
    assert value == "≈1x"
    assert detail == ("speed-up 0.99x [0.98, 1.01] (99 % interval, 40 rounds): the interval "
                      "contains 1, no measurable difference")  # fmt: skip
    assert speedup_texts(RatioEstimate(1.49, 1.40, 1.60, 40))[0] == "1.49x"
    slower, detail = speedup_texts(RatioEstimate(0.99, 0.97, 0.997, 134))
    assert slower == "0.99x" and "no measurable difference" not in detail
    assert speedup_texts(RatioEstimate(1.2, 1.0, 1.3, 10))[0] == "≈1x"  # an end at 1 holds it


def test_identical_all_float_configurations_measure_a_speed_up_around_one(  # type: ignore[no-untyped-def]
    qtbot, monkeypatch
) -> None:
    """A/A: every layer float. The sides are not the same code (the current copy's wrappers
    take the engine's branch), a real difference of a fraction of a percent that a 99.9 %
    interval over 100+ rounds can resolve; so, as in tests/measure, the interval must reach
    within 1 % of 1, and the panel shows exactly what ``speedup_texts`` makes of it."""
    monkeypatch.setattr(metrics_module, "LATENCY_CONFIDENCE", 0.999)
    widget = MetricsPanel(lenet_session("float", with_data=False))
    qtbot.addWidget(widget)
    wait_until_idle(widget, qtbot, timeout_s=120)
    report = widget.latency
    assert report is not None
    low, high = report.speedup_interval
    assert low <= 1.01 and high >= 0.99, widget.speedup_detail.text()
    value, detail = speedup_texts(report.comparison.speedup)
    assert (widget.speedup.text(), widget.speedup_detail.text()) == (value, detail)
    assert f"[{low:.2f}, {high:.2f}]" in detail and "(99.9 % interval" in detail
    assert widget.noise_label.isVisibleTo(widget) == report.noisy
    widget.shutdown()


def test_a_noisy_latency_is_marked_with_its_reason(panel, qtbot, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    reason = "the machine was busy (a test says so)"
    monkeypatch.setattr(latency_module, "load_note", lambda: reason)
    wait_until_idle(panel, qtbot)
    assert not panel.noise_label.isVisibleTo(panel)  # nothing measured yet
    panel.start_latency()
    wait_until_idle(panel, qtbot)
    assert panel.latency is not None and panel.latency.noisy
    assert panel.noise_label.isVisibleTo(panel)
    assert reason in panel.noise_label.text() and "noisy" in panel.noise_label.text()
    assert tone_of(panel.noise_label) is Tone.ERROR
    assert reason in panel.text()
