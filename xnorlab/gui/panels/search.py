"""Search panel: "what should I binarize?" under an accuracy budget, and its Pareto front.

Start runs ``xnorlab.search.walk.search_modes`` on a snapshot of the open model and the open
dataset in a worker (``LabSession.begin_search``/``end_search``), with progress and Cancel;
the modes stay locked while it runs, so the front belongs to the model it measured. The
result (``LabSession.last_search``) shows as a scatter of accuracy on the score split against
measured latency, packed memory as the marker size, the float and the chosen point marked
apart, each point with its 95 % intervals; below it the same points as a table. Clicking a
point or a row applies its modes to the layer table as one undoable step (Edit > Undo), on
the model's own weights. After a search with fine-tune epochs, "Use fine-tuned weights" applies
the chosen modes with the weights fine-tuned for them, the ones its confirm figure counted
(``LabSession.adopt_search_finetuned``: the modes undoable, the weights marked fine-tuned as
after training, and the front cleared, as it measured the old weights). A chosen point that
loses more than the budget on the confirm split is said in the summary. Errors are one line in
the panel and in the window's message bar.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QFontDatabase
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from xnorlab.binary.modes import Mode
from xnorlab.common.errors import XnorlabError
from xnorlab.gui import style
from xnorlab.gui.panels.base import TaskPanel, show_message, subscribe
from xnorlab.gui.panels.charts import legend_html
from xnorlab.gui.panels.formatting import format_bytes, mode_counts
from xnorlab.gui.workers import Task
from xnorlab.lab.session import FLOAT_POINT, LabSession, SearchJob, search_point_title
from xnorlab.measure.front import Agreement, FrontPoint, Objective, SearchResult, modes_letters
from xnorlab.search.walk import SearchOptions

SEARCH_KEY = "search"
DEFAULT_BUDGET_POINTS = 1.0
DEFAULT_SPLIT_ITEMS = 1000
MIN_MARKER_PX, MAX_MARKER_PX = 9.0, 22.0  # packed memory, smallest to largest point shown
TABLE_COLUMNS = ("#", "accuracy (%)", "ms", "memory", "modes")
MODES_TIP = "one letter per layer, in model order: F float, B BWN, X XNOR"
ADOPT_TEXT = "Use fine-tuned weights"
IDLE_TEXT = (
    "Finds per-layer modes that stay within the budget of the float accuracy on the open "
    "dataset (without one: agreement with float on crops of the bundled photos)."
)


class PointRole(str, Enum):
    """How a point is drawn: the all-float model, the search's choice, or another front point."""

    FLOAT = "float"
    CHOSEN = "chosen"
    FRONT = "front"


SYMBOLS = {PointRole.FLOAT: "d", PointRole.CHOSEN: "star", PointRole.FRONT: "o"}
DRAW_ORDER = {PointRole.FRONT: 0, PointRole.FLOAT: 1, PointRole.CHOSEN: 2}  # last on top


def role_colour(role: PointRole, theme: style.Theme | None = None) -> str:
    """Marker colour of ``role`` in ``theme``: float blue, binarized red, the choice green
    (the theme's mode and accent colours, readable on both plot backgrounds)."""
    t = theme or style.theme()
    return {PointRole.FLOAT: t.float_colour, PointRole.CHOSEN: t.accent}.get(role, t.xnor_colour)


@dataclass(frozen=True)
class ShownPoint:
    """One point as the panel shows it: its name in ``LabSession.search_points`` and role."""

    name: str
    point: FrontPoint
    role: PointRole

    @property
    def accuracy_percent(self) -> float:
        return 100 * self.point.accuracy.value


def shown_points(result: SearchResult, named: list[tuple[str, FrontPoint]]) -> list[ShownPoint]:
    """The session's named points with their roles (the float modes win over "chosen")."""
    chosen = result.chosen.modes if result.chosen is not None else None
    shown = []
    for name, point in named:
        if point.modes == result.float_point.modes:
            role = PointRole.FLOAT
        elif point.modes == chosen:
            role = PointRole.CHOSEN
        else:
            role = PointRole.FRONT
        shown.append(ShownPoint(name, point, role))
    return shown


def marker_sizes(memory_bytes: list[int]) -> list[float]:
    """Marker diameter in px, linear in packed memory from ``MIN_MARKER_PX`` (the smallest
    shown) to ``MAX_MARKER_PX`` (the largest); all the middle size when they are equal."""
    if not memory_bytes:
        return []
    low, high = min(memory_bytes), max(memory_bytes)
    if high == low:
        return [(MIN_MARKER_PX + MAX_MARKER_PX) / 2] * len(memory_bytes)
    span = MAX_MARKER_PX - MIN_MARKER_PX
    return [MIN_MARKER_PX + span * (m - low) / (high - low) for m in memory_bytes]


def modes_detail(point: FrontPoint) -> str:
    """One line per mode naming its layers (``XNOR: conv2, fc1``), for tooltips."""
    lines = []
    for mode in (Mode.XNOR, Mode.BWN, Mode.FLOAT):
        names = [name for name, m in point.modes.items() if m is mode]
        if names:
            label = mode.value.upper() if mode is not Mode.FLOAT else "float"
            lines.append(f"{label}: {', '.join(names)}")
    return "\n".join(lines)


def metric_name(result: SearchResult) -> str:
    """What the accuracy axis counts: top-1, or agreement with the float model (no labels)."""
    return "agreement with float" if result.metric is Agreement.FLOAT_AGREEMENT else "top-1"


def point_tip(shown: ShownPoint, result: SearchResult) -> str:
    """The hover text of a point: what it is, its three measures with intervals, its modes."""
    point = shown.point
    low, high = point.latency_interval_ms
    head = search_point_title(shown.name)
    if shown.role is PointRole.CHOSEN:
        head += " (chosen)"
    return "\n".join([
        head,
        f"{metric_name(result)} (score split): {point.accuracy.text()}",
        f"latency: {point.latency_ms:.3g} ms [{low:.3g}, {high:.3g}]",
        f"packed memory: {format_bytes(point.memory_bytes)}",
        mode_counts(point.modes.values()),
        modes_detail(point),
        "click: apply these modes (Ctrl+Z undoes)",
    ])  # fmt: skip


def row_name(shown: ShownPoint) -> str:
    """The table's name of a point: ``3 ★`` (chosen), ``4 float``, ``float``, ``2``."""
    if shown.role is PointRole.CHOSEN:
        return f"{shown.name} ★"
    if shown.role is PointRole.FLOAT and shown.name != FLOAT_POINT:
        return f"{shown.name} float"
    return shown.name


def summary_text(result: SearchResult) -> str:
    """What the search found, a line each: budget, samples, count, choice, confirmation."""
    metric = metric_name(result)
    points = "point" if result.budget_points == 1 else "points"
    parts = [
        f"budget {result.budget_points:g} {points} of {metric}, objective {result.objective}; "
        f"score split: {result.score_sample.text()}",
        f"{result.evaluated:,} configurations measured, {len(result.front)} on the front",
    ]
    if result.finetune_epochs:
        parts.append(
            f"the chosen modes fine-tuned {result.finetune_epochs} epochs before confirming: "
            f"'{ADOPT_TEXT}' applies them with those weights (a click applies modes only)"
        )
    chosen, float_point = result.chosen, result.float_point
    if chosen is None:
        parts.append("no binarized configuration stays within the budget: float is the answer")
    else:
        parts.append(
            f"chosen (★): {mode_counts(chosen.modes.values())}, {chosen.latency_ms:.3g} ms vs float "
            f"{float_point.latency_ms:.3g} ms, {format_bytes(chosen.memory_bytes)} vs "
            f"{format_bytes(float_point.memory_bytes)}"
        )
    if result.confirm_accuracy is not None and result.confirm_float is not None:
        parts.append(
            f"on the confirm split ({result.confirm_sample.text()}), which chose nothing: "
            f"chosen {result.confirm_accuracy.text()}, float {result.confirm_float.text()}"
        )
    over = over_budget_text(result)
    if over:
        parts.append(over)
    return "\n".join(parts)


def over_budget_text(result: SearchResult) -> str:
    """One line when the chosen point loses more than the budget on the confirm split."""
    lost = result.over_budget_points
    if lost is None:
        return ""
    more = "more fine-tune epochs" if result.finetune_epochs else "fine-tune epochs (e.g. 3)"
    return (
        f"⚠ on the confirm split the chosen point loses {lost:.1f} points against float, more "
        f"than the budget of {result.budget_points:g}: try {more}, more items per split or "
        "a smaller budget"
    )


class FrontChart(pg.PlotWidget):  # type: ignore[misc]  # pyqtgraph is untyped
    """Accuracy (%) against latency (ms), one marker per point (size: packed memory), with
    95 % interval bars and the budget as a dashed line. ``legend_label`` explains the marks;
    ``clicked(index)`` is called with the index of a clicked point."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setBackground(None)
        self.setLabel("bottom", "latency (ms, batch 1, measured)")
        self.setLabel("left", "accuracy (%)")
        for side in ("left", "bottom"):
            self.getAxis(side).enableAutoSIPrefix(False)
        self.showGrid(x=True, y=True, alpha=0.3)
        self.setMinimumHeight(220)
        self.legend_label = QLabel()
        self.legend_label.setTextFormat(Qt.TextFormat.RichText)
        self.legend_label.setWordWrap(True)
        self.points: list[ShownPoint] = []
        self.tips: list[str] = []
        self.on_click: list[Callable[[int], object]] = []
        self.scatter = pg.ScatterPlotItem(hoverable=True, tip=self._tip)
        self.scatter.sigClicked.connect(self._on_clicked)
        self.addItem(self.scatter)
        self._extras: list[pg.GraphicsObject] = []
        self.draw([], None)

    def draw(self, points: list[ShownPoint], result: SearchResult | None) -> None:
        """Show ``points`` of ``result`` (nothing when empty) in the current theme's colours."""
        for item in self._extras:
            self.removeItem(item)
        self._extras = []
        self.points = points
        self.tips = [point_tip(p, result) for p in points] if result is not None else []
        self.scatter.setData(spots=self._spots(points))
        t = style.theme()
        if points and result is not None:
            self._draw_intervals(points, t)
            budget = points_budget_line(result)
            line = pg.InfiniteLine(budget, angle=0, pen=pg.mkPen(t.muted, width=1,
                                   style=Qt.PenStyle.DashLine))  # fmt: skip
            self.addItem(line)
            self._extras.append(line)
            self.setLabel("left", f"{metric_name(result)} on the score split (%)")
            self.autoRange()
        self.legend_label.setText(legend_text(t))

    def _spots(self, points: list[ShownPoint]) -> list[dict[str, object]]:
        """One spot per point (``data``: its index), the chosen one drawn last: it is often
        as fast as float and would hide under its marker."""
        sizes = marker_sizes([p.point.memory_bytes for p in points])
        t = style.theme()
        spots = []
        drawn = sorted(
            enumerate(zip(points, sizes, strict=True)), key=lambda e: DRAW_ORDER[e[1][0].role]
        )
        for index, (shown, size) in drawn:
            colour = role_colour(shown.role, t)
            outline = t.plot_fg if shown.role is not PointRole.FRONT else colour
            spots.append({
                "pos": (shown.point.latency_ms, shown.accuracy_percent), "data": index,
                "size": size + (6 if shown.role is PointRole.CHOSEN else 0),
                "symbol": SYMBOLS[shown.role], "brush": pg.mkBrush(colour),
                "pen": pg.mkPen(outline, width=1.5),
            })  # fmt: skip
        return spots

    def _draw_intervals(self, points: list[ShownPoint], t: style.Theme) -> None:
        xs = np.array([p.point.latency_ms for p in points])
        ys = np.array([p.accuracy_percent for p in points])
        lows = np.array([[p.point.latency_interval_ms[0], 100 * p.point.accuracy.interval[0]]
                         for p in points])  # fmt: skip
        highs = np.array([[p.point.latency_interval_ms[1], 100 * p.point.accuracy.interval[1]]
                          for p in points])  # fmt: skip
        bars = pg.ErrorBarItem(
            x=xs, y=ys, left=xs - lows[:, 0], right=highs[:, 0] - xs, bottom=ys - lows[:, 1],
            top=highs[:, 1] - ys, beam=0, pen=pg.mkPen(t.muted, width=1),
        )  # fmt: skip
        bars.setZValue(-1)  # under the markers
        self.addItem(bars)
        self._extras.append(bars)

    def _tip(self, x: float, y: float, data: object) -> str:
        index = data if isinstance(data, int) else -1
        return self.tips[index] if 0 <= index < len(self.tips) else ""

    def _on_clicked(self, _item: object, spots: list[object], *_event: object) -> None:
        if not spots:
            return
        index = int(spots[0].data())  # type: ignore[attr-defined]
        for callback in self.on_click:
            callback(index)

    def spot(self, index: int) -> Any:
        """The drawn spot of point ``index`` (a pyqtgraph ``SpotItem``; for tests)."""
        return next(spot for spot in self.scatter.points() if spot.data() == index)

    def point_position(self, index: int) -> tuple[float, float]:
        """``(latency_ms, accuracy %)`` of point ``index`` as drawn (for tests)."""
        position = self.spot(index).pos()
        return float(position.x()), float(position.y())


def points_budget_line(result: SearchResult) -> float:
    """The lowest accuracy (%) a configuration may have on the score split: float minus the
    budget in points."""
    return 100 * result.float_point.accuracy.value - result.budget_points


def legend_text(t: style.Theme) -> str:
    """The chart's legend (rich text) in theme ``t``'s colours."""
    marks = legend_html([
        ("float (every layer float)", role_colour(PointRole.FLOAT, t)),
        ("chosen (star)", role_colour(PointRole.CHOSEN, t)),
        ("other front points", role_colour(PointRole.FRONT, t)),
    ])  # fmt: skip
    return (
        f"{marks}<br>marker size: packed memory (larger = more bytes) · bars: 95 % intervals · "
        "dashed line: float minus the budget · click a point to apply its modes"
    )


class SearchPanel(TaskPanel):
    """Budget, objective, fine-tune epochs, Start/Cancel, progress, the front and its table;
    a cancelled search keeps nothing and leaves the modes as they are."""

    def __init__(self, session: LabSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.job: SearchJob | None = None
        self._found: SearchResult | None = None  # the running job's result, until it ends
        self._build()
        subscribe(self, [
            (session.model_changed, self._on_model_changed),
            (session.search_changed, self.refresh),
        ])  # fmt: skip
        self.refresh()

    def _build(self) -> None:
        self.budget_spin = QDoubleSpinBox(
            decimals=2, minimum=0.0, maximum=100.0, value=DEFAULT_BUDGET_POINTS, suffix=" points"
        )
        self.budget_spin.setSingleStep(0.5)
        self.budget_spin.setToolTip("how many points of accuracy below float a choice may lose")
        self.objective_combo = QComboBox()
        for objective in Objective:
            self.objective_combo.addItem(str(objective), objective)
        self.objective_combo.setToolTip(
            "latency: measured through the engine, batch 1; memory: packed bytes"
        )
        self.finetune_spin = QSpinBox(minimum=0, maximum=100, value=0)
        self.finetune_spin.setToolTip("epochs of fine-tuning the chosen modes before confirming")
        self.items_spin = QSpinBox(minimum=10, maximum=100_000, value=DEFAULT_SPLIT_ITEMS)
        self.items_spin.setSingleStep(100)
        self.items_spin.setToolTip(
            "items in the score split and, apart, in the confirm split (seeded, stratified)"
        )
        form = QFormLayout()
        form.addRow("Accuracy budget", self.budget_spin)
        form.addRow("Objective", self.objective_combo)
        form.addRow("Fine-tune epochs", self.finetune_spin)
        form.addRow("Items per split", self.items_spin)
        self.start_button = QPushButton("Search")
        self.start_button.clicked.connect(self.start)
        self.cancel_button = self._make_cancel_button()
        self.adopt_button = QPushButton(ADOPT_TEXT)
        self.adopt_button.setToolTip(
            "apply the chosen modes with the weights the search fine-tuned for them "
            "(Ctrl+Z undoes the modes, not the weights)"
        )
        self.adopt_button.clicked.connect(self.adopt_finetuned)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.adopt_button)
        self.progress = QProgressBar(maximum=1000)
        self.message = QLabel(IDLE_TEXT)
        self.message.setWordWrap(True)
        self.chart = FrontChart()
        self.chart.on_click.append(self.apply)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.table = self._build_table()
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.message)
        layout.addWidget(self.chart.legend_label)
        layout.addWidget(self.chart, 3)
        layout.addWidget(self.summary)
        layout.addWidget(self.table, 2)

    def _build_table(self) -> QTableWidget:
        table = QTableWidget(0, len(TABLE_COLUMNS))
        table.setHorizontalHeaderLabels(list(TABLE_COLUMNS))
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        table.verticalHeader().setVisible(False)
        table.setWordWrap(False)  # one line a point: a narrow dock scrolls sideways
        table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        table.horizontalHeader().setStretchLastSection(True)
        table.cellClicked.connect(lambda row, _column: self.apply(row))
        modes_header = table.horizontalHeaderItem(len(TABLE_COLUMNS) - 1)
        if modes_header is not None:
            modes_header.setToolTip(MODES_TIP)
        self._fixed = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        return table

    # ------------------------------------------------------------------ running
    def options(self) -> SearchOptions:
        """The ``SearchOptions`` the controls describe."""
        items = self.items_spin.value()
        return SearchOptions(
            budget_points=self.budget_spin.value(), objective=self.objective_combo.currentData(),
            finetune_epochs=self.finetune_spin.value(), score_items=items, confirm_items=items,
        )  # fmt: skip

    def start(self) -> Task | None:
        """Start a search in a worker; a refusal (no data, modes locked) is shown, not raised."""
        if self.busy():
            return None
        try:
            job = self.session.begin_search(self.options())
        except XnorlabError as exc:
            self._fail(str(exc))
            return None
        self.job, self._found = job, None
        self.progress.setValue(0)
        self._set_running(True)
        show_message(self.message, "searching…")
        self.task = self.runner.start(
            job.run, key=SEARCH_KEY, on_progress=self._on_progress, on_result=self._keep,
            on_error=self._fail, on_cancelled=self._cancelled,
            on_finished=lambda: self._finished(job),
        )  # fmt: skip
        return self.task

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.adopt_button.setEnabled(not running)

    def _on_progress(self, fraction: float, message: str, _payload: object) -> None:
        self.progress.setValue(int(1000 * fraction))
        if message:
            show_message(self.message, message)

    def _keep(self, result: SearchResult) -> None:
        self._found = result

    def _finished(self, job: SearchJob) -> None:
        found, self._found, self.job = self._found, None, None
        self._set_running(False)
        kept = self.session.end_search(job, found)
        if found is None:
            return
        if not kept:
            show_message(self.message, "another model was opened meanwhile: result dropped",
                         error=True)  # fmt: skip
            return
        self.progress.setValue(1000)
        done = "done: click a point or a row to apply its modes"
        if self.session.search_finetuned:
            done += f", or '{ADOPT_TEXT}' for the chosen modes with their fine-tuned weights"
        show_message(self.message, done)

    def _fail(self, text: str) -> None:
        self.progress.setValue(0)
        show_message(self.message, text, error=True)
        self.session.error.emit(text)  # the window's message bar

    def _cancelled(self) -> None:
        self.progress.setValue(0)
        show_message(self.message, "cancelled: no result, the modes are unchanged")

    def _on_model_changed(self) -> None:
        if self.busy():
            self.cancel()

    # ------------------------------------------------------------------ the result
    def points(self) -> list[ShownPoint]:
        """The points shown, in table order (empty without a result)."""
        result = self.session.last_search
        return [] if result is None else shown_points(result, self.session.search_points())

    def refresh(self) -> None:
        """Draw ``session.last_search`` (or nothing) in the chart, the summary and the table."""
        result = self.session.last_search
        points = self.points()
        self.chart.draw(points, result)
        self.summary.setText(summary_text(result) if result is not None else "")
        self.summary.setVisible(result is not None)
        self.adopt_button.setVisible(self.session.search_finetuned)
        self._fill_table(points, result)

    def _fill_table(self, points: list[ShownPoint], result: SearchResult | None) -> None:
        self.table.setRowCount(len(points))
        header = self.table.horizontalHeaderItem(1)
        if result is not None and header is not None:
            header.setText(f"{metric_name(result)} % (n={result.score_sample.count:,})")
        for row, shown in enumerate(points):
            point = shown.point
            low, high = point.accuracy.interval
            accuracy = f"{shown.accuracy_percent:.1f} [{100 * low:.1f}, {100 * high:.1f}]"
            cells = (row_name(shown), accuracy, f"{point.latency_ms:.3g}",
                     format_bytes(point.memory_bytes), modes_letters(point.modes))  # fmt: skip
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(self.chart.tips[row])
                font = QFont(self._fixed if column == len(cells) - 1 else item.font())
                font.setBold(shown.role is PointRole.CHOSEN)
                item.setFont(font)
                self.table.setItem(row, column, item)

    def apply(self, index: int) -> list[str] | None:
        """Apply the modes of point ``index`` (chart or table) to the model, one undo step;
        a refusal (modes locked) goes to the message bar."""
        points = self.points()
        if not 0 <= index < len(points):
            return None
        changed = self.session.attempt(self.session.apply_search_point, index)
        if changed is None:
            return None
        self.table.selectRow(index)
        title = search_point_title(points[index].name)
        what = f"applied {title}" if changed else f"{title}: the model already has these modes"
        text = f"{what} (Ctrl+Z undoes)" if changed else what
        if points[index].role is PointRole.CHOSEN and self.session.search_finetuned:
            text += (
                f"; its modes only, on the model's own weights: '{ADOPT_TEXT}' applies them "
                "with the weights fine-tuned for them"
            )
        show_message(self.message, text)
        return changed

    def adopt_finetuned(self) -> list[str] | None:
        """Apply the chosen modes with the weights fine-tuned for them (``LabSession.
        adopt_search_finetuned``); a refusal goes to the message bar."""
        found = self.session.last_search
        changed = self.session.attempt(self.session.adopt_search_finetuned)
        if changed is None or found is None:
            return None
        confirm = found.confirm_accuracy.text() if found.confirm_accuracy is not None else "-"
        show_message(
            self.message,
            f"the model now has the chosen modes and the weights fine-tuned for them (confirm "
            f"split: {confirm}); the front measured the old weights and is cleared; Ctrl+Z "
            "undoes the modes, not the weights (Training > Save checkpoint keeps them)",
        )
        return changed

    def restyle(self) -> None:
        """Redraw the markers and legend in the new theme's colours (the window restyles
        the axes)."""
        self.chart.draw(self.points(), self.session.last_search)
