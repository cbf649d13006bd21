"""Metrics panel: accuracy, memory and latency, float vs the current configuration.

After every change of the model, its weights, the data or a layer's mode, the panel waits a
short moment (so a burst of toggles costs one run), then in a worker:

1. validation top-1, float vs current, on a seeded class-stratified sample
   (``measure.compare_accuracy``): each with n and its 95 % Wilson interval, and the cost of
   binarizing (float - current, positive = worse) paired on the same items with its interval
   and verdict (McNemar: "exceeds noise" / "within noise"). The float pass's per-item scores
   are cached until the weights, data or sample count change and passed back, so later
   comparisons stay paired;
2. if "auto" is on, end-to-end latency torch float vs current through the native engine
   (``measure.measure_latency``), started after the accuracy run and once the thread pool is
   idle (other views' workers done, waiting at most ``QUIET_MAX_WAIT_MS``), so timings are not
   taken beside other work. The speed-up is the median of per-round ratios with its interval;
   an interval that contains 1 shows as "≈1x" (no measurable difference, never a figure that
   looks like one), and a noisy measurement says so and why. The per-layer chart
   (pack / popcount / scaling / other) has a last row for the time no layer accounts for, so
   its bars add up to the measured median.

Memory (float vs packed) is computed at once on the GUI thread (it only reads shapes). Results
of a run overtaken by a newer change are dropped. Cancel stops both runs.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QThreadPool, QTimer
from PySide6.QtWidgets import (
    QCheckBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from xnorlab.common.errors import XnorlabError
from xnorlab.gui.panels.base import show_message, subscribe
from xnorlab.gui.panels.charts import LatencySplitChart
from xnorlab.gui.panels.formatting import format_bytes, format_percent, format_ratio, format_seconds
from xnorlab.gui.style import Tone, set_tone
from xnorlab.gui.workers import Task, TaskRunner
from xnorlab.lab.session import LabSession
from xnorlab.measure.accuracy import AccuracyReport, compare_accuracy
from xnorlab.measure.intervals import Accuracy, PairedDifference
from xnorlab.measure.latency import LatencyReport, measure_latency
from xnorlab.measure.memory import MemoryReport, model_memory
from xnorlab.measure.timing import RatioEstimate, confidence_text

DEBOUNCE_MS = 300
DEFAULT_SAMPLES = 1000
LATENCY_REPEATS = 20
QUIET_POLL_MS = 150  # latency waits for the other workers (table, views) to finish...
QUIET_MAX_WAIT_MS = 3000  # ...but not longer than this
LATENCY_BUDGET_S = 2.0  # timed runs per measurement, both sides together (large models)
LATENCY_CONFIDENCE = 0.95  # of the speed-up's interval
COST_TIP = (
    "cost of binarizing = float - current top-1, in points; positive: the current modes get "
    "fewer items right. Paired on the same items: 95 % interval (Newcombe) and McNemar's exact "
    "test over the items where the two disagree ('within noise': p >= 0.05, no evidence either "
    "way)"
)


def interval_text(accuracy: Accuracy) -> str:
    """``[97.8, 99.2] (n=1,000)``: the 95 % Wilson interval of a top-1, in percent."""
    low, high = accuracy.interval
    return f"[{100 * low:.1f}, {100 * high:.1f}] (n={accuracy.n:,})"


def cost_texts(comparison: PairedDifference) -> tuple[str, str]:
    """The cost in points and its interval (``+1.20 pts``, ``[+0.55, +1.98]``)."""
    low, high = comparison.interval
    cost = f"{100 * comparison.cost:+.2f} pts".replace("-0.00", "+0.00")
    return cost, f"[{100 * low:+.2f}, {100 * high:+.2f}]"


def pairing_text(comparison: PairedDifference | None) -> str:
    """What the verdict rests on: the items where float and current disagree."""
    if comparison is None:
        return "not paired: the float top-1 was given without its items"
    return (
        f"paired on the same {comparison.n:,} items: {comparison.only_baseline} right in float "
        f"only, {comparison.only_candidate} in current only, McNemar p = {comparison.p_value:.2g}"
    )


def speedup_texts(estimate: RatioEstimate) -> tuple[str, str]:
    """The speed-up as the panel shows it: the value (``1.49x``; ``≈1x`` when the interval
    contains 1, since no direction is measured then) and the line under it."""
    detail = (
        f"speed-up {estimate.median:.2f}x [{estimate.low:.2f}, {estimate.high:.2f}] "
        f"({confidence_text(estimate.confidence)} interval, {estimate.rounds} rounds)"
    )
    if estimate.low <= 1.0 <= estimate.high:
        return "≈1x", f"{detail}: the interval contains 1, no measurable difference"
    return f"{estimate.median:.2f}x", detail


def _value_label() -> QLabel:
    label = QLabel("—")
    font = label.font()
    font.setBold(True)
    label.setFont(font)
    return label


def _slim_progress_bar() -> QProgressBar:
    bar = QProgressBar(maximum=1000, textVisible=False)
    bar.setMaximumHeight(10)  # empty when idle, fills while a run is going
    return bar


def _mark(labels: tuple[QLabel, ...], stale: bool) -> None:
    """Muted while a newer run is pending: the numbers describe an older state."""
    for label in labels:
        set_tone(label, Tone.MUTED if stale else Tone.NORMAL)


class MetricsPanel(QWidget):
    """Accuracy, memory and latency of the open model, float vs the current modes."""

    def __init__(self, session: LabSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.runner = TaskRunner(self)
        self.accuracy: AccuracyReport | None = None
        self.latency: LatencyReport | None = None
        self.memory: MemoryReport | None = None
        self.accuracy_task: Task | None = None
        self.latency_task: Task | None = None
        self._float_cache: tuple[tuple[Any, ...], tuple[bool, ...]] | None = None
        self._weights_generation = 0
        self._generation = 0
        self._timer = QTimer(self, singleShot=True, interval=DEBOUNCE_MS)
        self._timer.timeout.connect(self.recompute)
        self._quiet = QTimer(self, singleShot=True, interval=QUIET_POLL_MS)
        self._quiet.timeout.connect(self._latency_when_quiet)
        self._quiet_waited_ms = 0
        self._build()
        subscribe(self, [
            (session.model_changed, self._on_model),
            (session.weights_changed, self._on_weights_or_data),
            (session.data_changed, self._on_weights_or_data),
            (session.modes_changed, lambda _names: self._on_modes()),
        ])  # fmt: skip
        if session.loaded is not None:
            self._on_weights_or_data()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.addWidget(self._accuracy_box())
        layout.addWidget(self._memory_box())
        layout.addWidget(self._latency_box())
        self.chart = LatencySplitChart()
        layout.addWidget(self.chart.legend_label)
        self.chart_area = QScrollArea(widgetResizable=True)
        self.chart_area.setWidget(self.chart)  # one readable row per layer, scrolled if deep
        layout.addWidget(self.chart_area, 1)
        layout.addStretch(0)  # what a short chart leaves: panel background, not an empty frame
        self._fit_chart_area()

    def _fit_chart_area(self) -> None:
        """The scroll area is never taller than the chart wants to be."""
        frame = 2 * self.chart_area.frameWidth()
        self.chart_area.setMaximumHeight(self.chart.maximumHeight() + frame)

    def _accuracy_box(self) -> QGroupBox:
        box = QGroupBox("Validation accuracy (top-1, 95 % interval)")
        self.float_acc, self.current_acc, self.acc_drop = (_value_label() for _ in range(3))
        self.float_interval, self.current_interval, self.drop_interval = (
            QLabel() for _ in range(3)
        )
        self.acc_verdict = QLabel()
        self.samples_spin = QSpinBox(minimum=10, maximum=1_000_000, value=DEFAULT_SAMPLES)
        self.samples_spin.setSingleStep(100)
        self.samples_spin.setSuffix(" samples")
        self.samples_spin.valueChanged.connect(lambda _v: self.schedule())
        self.acc_progress = _slim_progress_bar()
        self.acc_message = QLabel()
        self.acc_message.setWordWrap(True)
        grid = QGridLayout(box)
        rows = (
            ("float", self.float_acc, self.float_interval),
            ("current", self.current_acc, self.current_interval),
            ("cost", self.acc_drop, self.drop_interval),
        )
        for row, (text, value, interval) in enumerate(rows):
            grid.addWidget(QLabel(text), row, 0)
            grid.addWidget(value, row, 1)
            grid.addWidget(interval, row, 2)
        grid.addWidget(self.acc_verdict, 2, 3)
        for widget in (grid.itemAtPosition(2, 0).widget(), self.acc_drop, self.drop_interval,
                       self.acc_verdict):  # fmt: skip
            widget.setToolTip(COST_TIP)
        grid.setColumnStretch(4, 1)  # the verdict sits beside its interval
        grid.addWidget(self.samples_spin, 3, 0, 1, 2)
        grid.addWidget(self.acc_progress, 3, 2, 1, 3)
        grid.addWidget(self.acc_message, 4, 0, 1, 5)
        return box

    def _memory_box(self) -> QGroupBox:
        box = QGroupBox("Model memory")
        self.float_mem, self.packed_mem, self.mem_ratio = (_value_label() for _ in range(3))
        grid = QGridLayout(box)
        for col, (text, widget) in enumerate(
            (("float32", self.float_mem), ("packed", self.packed_mem), ("ratio", self.mem_ratio))
        ):
            grid.addWidget(QLabel(text), 0, 2 * col)
            grid.addWidget(widget, 0, 2 * col + 1)
        return box

    def _latency_box(self) -> QGroupBox:
        box = QGroupBox("Latency (batch 1, median)")
        self.float_lat, self.current_lat, self.speedup = (_value_label() for _ in range(3))
        self.speedup_detail = QLabel()
        self.speedup_detail.setWordWrap(True)
        self.noise_label = QLabel()
        self.noise_label.setWordWrap(True)
        self.noise_label.hide()
        self.engine_label = QLabel()
        self.engine_label.setWordWrap(True)
        self.auto_latency = QCheckBox("auto")
        self.auto_latency.setChecked(True)
        self.auto_latency.setToolTip("measure latency after every change")
        self.measure_button = QPushButton("Measure")
        self.measure_button.clicked.connect(self.start_latency)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.lat_progress = _slim_progress_bar()
        grid = QGridLayout(box)
        for col, (text, widget) in enumerate(
            (("torch float", self.float_lat), ("current", self.current_lat),
             ("speed-up", self.speedup))
        ):  # fmt: skip
            grid.addWidget(QLabel(text), 0, 2 * col)
            grid.addWidget(widget, 0, 2 * col + 1)
        buttons = QHBoxLayout()
        for control in (self.auto_latency, self.measure_button, self.cancel_button):
            buttons.addWidget(control)
        buttons.addWidget(self.lat_progress, 1)
        grid.addLayout(buttons, 1, 0, 1, 6)
        for row, label in enumerate((self.speedup_detail, self.noise_label, self.engine_label)):
            grid.addWidget(label, 2 + row, 0, 1, 6)
        return box

    # ------------------------------------------------------------------ events
    def _on_model(self) -> None:
        """A new model: nothing shown so far describes it."""
        self.chart.set_layers([])
        self._fit_chart_area()
        self.accuracy, self.latency = None, None
        self._clear(self._accuracy_labels() + self._latency_labels())
        self._clear_details()
        self._on_weights_or_data()

    def _clear_details(self) -> None:
        """Empty the lines that explain the shown numbers (intervals, sample, engine)."""
        for label in (self.float_interval, self.current_interval, self.drop_interval,
                      self.acc_verdict, self.speedup_detail, self.engine_label):  # fmt: skip
            label.setText("")
        self.noise_label.hide()

    @staticmethod
    def _clear(labels: tuple[QLabel, ...]) -> None:
        for label in labels:
            label.setText("—")
            set_tone(label, Tone.NORMAL)

    def restyle(self) -> None:
        """Nothing to redraw on a theme switch: the labels and the legend take their colours
        from the palette, the window restyles the chart's axes."""

    def _on_weights_or_data(self) -> None:
        self._weights_generation += 1
        self._float_cache = None
        self._on_modes()

    def _on_modes(self) -> None:
        self.refresh_memory()
        self.schedule()

    def schedule(self) -> None:
        """Recompute after ``DEBOUNCE_MS`` (restarted by every further change).

        Until then the shown accuracy and latency are greyed: they describe an older state.
        """
        self._generation += 1
        _mark(self._accuracy_labels() + self._latency_labels(), stale=True)
        self._quiet.stop()
        self._timer.start()

    def _accuracy_labels(self) -> tuple[QLabel, ...]:
        return (self.float_acc, self.current_acc, self.acc_drop)

    def _latency_labels(self) -> tuple[QLabel, ...]:
        return (self.float_lat, self.current_lat, self.speedup)

    def busy(self) -> bool:
        """True while a run is waiting or running (the screenshot mode waits for False)."""
        return self._timer.isActive() or self._quiet.isActive() or self.runner.active > 0

    def cancel(self) -> None:
        """Stop the running accuracy and latency measurements (their results are dropped)."""
        self._timer.stop()
        self._quiet.stop()
        self._generation += 1
        self.runner.cancel_all()
        show_message(self.acc_message, "cancelled")

    def shutdown(self) -> None:
        """Cancel everything and wait for the workers (window close)."""
        self._timer.stop()
        self._quiet.stop()
        self.runner.shutdown()

    # ------------------------------------------------------------------ memory
    def refresh_memory(self) -> None:
        """Memory float vs packed of the live model (cheap: shapes only)."""
        if self.session.loaded is None:
            return
        self.memory = model_memory(self.session.model)
        self.float_mem.setText(format_bytes(self.memory.float_bytes))
        self.packed_mem.setText(format_bytes(self.memory.packed_bytes))
        self.mem_ratio.setText(format_ratio(self.memory.ratio))

    # ------------------------------------------------------------------ accuracy
    def _float_key(self) -> tuple[Any, ...]:
        return (self._weights_generation, self.samples_spin.value())

    def recompute(self) -> None:
        """Start the accuracy run now (then latency, if auto); stale runs are superseded."""
        if self.session.loaded is None:
            return
        generation = self._generation
        try:
            split = self.session.dataset.val if self.session.dataset is not None else None
            snapshot = self.session.snapshot()
        except XnorlabError as exc:
            show_message(self.acc_message, str(exc), error=True)
            return
        unlabelled = self.session.dataset is not None and not self.session.dataset.info.get(
            "labelled", True
        )
        if split is None or unlabelled:
            self.accuracy = None  # an older model's or dataset's numbers would mislead
            self._clear(self._accuracy_labels())
            for label in (self.float_interval, self.current_interval, self.drop_interval,
                          self.acc_verdict):  # fmt: skip
                label.setText("")
            show_message(
                self.acc_message,
                "the data have no labels: no accuracy (the views still use them)"
                if unlabelled
                else "open a dataset to measure accuracy (Ctrl+D)",
            )
            self._accuracy_done(generation)
            return
        key = self._float_key()
        cached = self._float_cache[1] if self._float_cache and self._float_cache[0] == key else None
        show_message(self.acc_message, "evaluating…")
        self.acc_progress.setValue(0)
        self.accuracy_task = self.runner.start(
            compare_accuracy, snapshot, split, self.session.class_names,
            max_samples=self.samples_spin.value(), float_correct=cached, key="metrics-accuracy",
            on_result=lambda report: self._show_accuracy(report, generation, key),
            on_progress=lambda fraction, *_: self.acc_progress.setValue(int(1000 * fraction)),
            on_error=lambda text: show_message(self.acc_message, text, error=True),
            on_finished=lambda: self._accuracy_done(generation),
        )  # fmt: skip

    def _show_accuracy(self, report: AccuracyReport, generation: int, key: tuple[Any, ...]) -> None:
        if generation != self._generation:
            return  # overtaken by a newer change
        self.accuracy = report
        if report.float_correct:
            self._float_cache = (key, report.float_correct)
        self.float_acc.setText(format_percent(report.float_top1))
        self.float_interval.setText(interval_text(report.float_accuracy))
        self.current_acc.setText(format_percent(report.current_top1))
        self.current_interval.setText(interval_text(report.current_accuracy))
        comparison = report.comparison
        if comparison is None:  # float top-1 given without its items: nothing to pair
            self.acc_drop.setText(f"{100 * report.drop:+.2f} pts")
            self.drop_interval.setText("")
            self.acc_verdict.setText("not paired")
        else:
            cost, interval = cost_texts(comparison)
            self.acc_drop.setText(cost)
            self.drop_interval.setText(interval)
            self.acc_verdict.setText(comparison.verdict)
        _mark(self._accuracy_labels(), stale=False)
        set_tone(self.acc_verdict, Tone.NORMAL if comparison and comparison.exceeds_noise
                 else Tone.MUTED)  # fmt: skip
        self.acc_verdict.setToolTip(f"{COST_TIP}\n{pairing_text(comparison)}")
        where = self.session.dataset_spec or "the data"
        show_message(self.acc_message, f"{where}, {report.sample.text(self.session.class_names)}")

    def _accuracy_done(self, generation: int) -> None:
        if self.runner.running("metrics-accuracy") in (None, self.accuracy_task):
            self.acc_progress.setValue(0)  # empty bar = idle
        if generation == self._generation and self.auto_latency.isChecked():
            self._quiet_waited_ms = 0
            self._quiet.start()

    def _latency_when_quiet(self) -> None:
        """Start latency once no other worker runs (timings taken beside them are noise)."""
        others = QThreadPool.globalInstance().activeThreadCount() > 0
        if others and self._quiet_waited_ms < QUIET_MAX_WAIT_MS:
            self._quiet_waited_ms += QUIET_POLL_MS
            self._quiet.start()
            return
        self.start_latency()

    # ------------------------------------------------------------------ latency
    def start_latency(self) -> None:
        """Measure end-to-end and per-layer latency, float vs current, in a worker."""
        if self.session.loaded is None:
            return
        generation = self._generation
        self.lat_progress.setValue(0)
        self.engine_label.setText("measuring…")
        self.latency_task = self.runner.start(
            measure_latency, self.session.snapshot(), self.session.input_shape,
            repeats=LATENCY_REPEATS, time_budget_s=LATENCY_BUDGET_S,
            confidence=LATENCY_CONFIDENCE, key="metrics-latency",
            on_result=lambda report: self._show_latency(report, generation),
            on_progress=lambda fraction, *_: self.lat_progress.setValue(int(1000 * fraction)),
            on_error=lambda text: show_message(self.engine_label, text, error=True),
            on_finished=lambda: self.lat_progress.setValue(0),
        )  # fmt: skip

    def _show_latency(self, report: LatencyReport, generation: int) -> None:
        if generation != self._generation:
            return
        self.latency = report
        self.float_lat.setText(format_seconds(report.float_s))
        self.current_lat.setText(format_seconds(report.current_s))
        estimate = report.comparison.speedup
        value, detail = speedup_texts(estimate)
        self.speedup.setText(value)
        self.speedup.setToolTip(detail)
        self.speedup_detail.setText(detail)
        _mark(self._latency_labels(), stale=False)
        self._show_noise(report.noise_reason)
        show_message(
            self.engine_label,
            f"engine: {report.engine} · {report.repeats} runs · not in any layer: float "
            f"{format_seconds(report.float_unattributed_s)}, current "
            f"{format_seconds(report.current_unattributed_s)}\n"
            f"{report.comparison.deploy_text()}",
        )
        self.engine_label.setToolTip(
            f"current range {format_seconds(report.current_min_max_s[0])} to "
            f"{format_seconds(report.current_min_max_s[1])}; torch float range "
            f"{format_seconds(report.float_min_max_s[0])} to "
            f"{format_seconds(report.float_min_max_s[1])}"
        )
        self.chart.set_layers(
            report.layers, (report.float_unattributed_s, report.current_unattributed_s)
        )
        self._fit_chart_area()

    def _show_noise(self, reason: str | None) -> None:
        """The noisy mark: the reason in the error colour, hidden when the figure holds."""
        if reason is None:
            self.noise_label.hide()
            return
        show_message(self.noise_label, f"⚠ noisy: {reason}", error=True)
        self.noise_label.show()

    def text(self) -> str:
        """What the panel shows, as plain lines (for reports of the app and tests)."""
        lines = [
            f"accuracy: float {self.float_acc.text()} {self.float_interval.text()}",
            f"          current {self.current_acc.text()} {self.current_interval.text()}",
            f"          cost {self.acc_drop.text()} {self.drop_interval.text()} "
            f"{self.acc_verdict.text()}",
            f"          {self.acc_message.text()}",
            f"          {self.acc_verdict.toolTip().splitlines()[-1]}",
            f"memory: float32 {self.float_mem.text()}, packed {self.packed_mem.text()}, "
            f"ratio {self.mem_ratio.text()}",
            f"latency: torch float {self.float_lat.text()}, current {self.current_lat.text()}, "
            f"speed-up {self.speedup.text()}",
            f"         {self.speedup_detail.text()}",
        ]
        if self.noise_label.isVisibleTo(self):
            lines.append(f"         {self.noise_label.text()}")
        lines.append(f"         {self.engine_label.text()}")
        return "\n".join(lines)
