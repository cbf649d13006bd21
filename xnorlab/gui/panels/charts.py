"""pyqtgraph charts of the panels: the per-layer latency split and live training curves.

Legends are QLabels beside the plot (``chart.legend_label``), not pyqtgraph items inside it:
a label wraps in a narrow dock instead of being cut, takes no plot rows, and its text follows
the palette when the theme changes. Axes without a unit show plain numbers (no SI prefix:
"epoch (x0.001)" read as a different unit).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget

from xnorlab.measure.latency import LayerLatency

# (field of LayerLatency, legend label, colour): the stacking order, left to right
SPLIT_PARTS: tuple[tuple[str, str, str], ...] = (
    ("pack_s", "pack", "#4c72b0"),
    ("popcount_s", "popcount", "#dd8452"),
    ("scale_s", "scaling", "#55a868"),
    ("other_s", "other", "#8c8c8c"),
)
FLOAT_COLOUR = "#c44e52"
UNATTRIBUTED_COLOUR = "#b39b5e"  # the time no layer accounts for (activations, pooling, ...)
UNATTRIBUTED_ROW = "not in any layer"
SERIES_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3")
ROW_PX = 26  # pixels per layer at least: readable names however many layers there are
MAX_ROW_PX = 44  # and at most: a 4-layer model does not get bars as tall as a thumb
CHART_MARGIN_PX = 60  # bottom axis and its label
ACCURACY_RANGE = (0.0, 100.0)


def legend_html(entries: Sequence[tuple[str, str]]) -> str:
    """``[(label, colour)]`` as a line of coloured squares and names (wraps when narrow)."""
    return " &nbsp; ".join(
        f"<span style='color:{colour}'>&#9632;</span>&nbsp;{label}" for label, colour in entries
    )


def _legend_label(entries: Sequence[tuple[str, str]] = ()) -> QLabel:
    label = QLabel(legend_html(entries))
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setWordWrap(True)
    return label


class LatencySplitChart(pg.PlotWidget):  # type: ignore[misc]  # pyqtgraph is untyped
    """Horizontal stacked bars, one per layer: pack / popcount / scaling / other (seconds).

    A thin red bar under each layer shows its torch float time for comparison. A last row,
    "not in any layer", holds the rest of each side's measured median (activations, pooling,
    Python between the layers), so the bars of each side add up to its end-to-end median. The
    chart asks for ``ROW_PX`` to ``MAX_ROW_PX`` per row; put it in a scroll area for deep
    models and ``legend_label`` above it.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setBackground(None)
        self.setLabel("bottom", "time per forward pass", units="s")
        self.getPlotItem().invertY(True)
        self.showGrid(x=True, y=False, alpha=0.3)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        entries = [(label, colour) for _, label, colour in SPLIT_PARTS]
        self.legend_label = _legend_label([
            *entries, (UNATTRIBUTED_ROW, UNATTRIBUTED_COLOUR), ("torch float", FLOAT_COLOUR),
        ])  # fmt: skip
        self.bars: dict[str, pg.BarGraphItem] = {}
        self.layer_names: list[str] = []
        self.unattributed_s: tuple[float, float] | None = None  # (float, current) seconds
        self._fit_height(0)

    def _fit_height(self, rows: int) -> None:
        count = max(rows, 1)
        self.setMinimumHeight(ROW_PX * count + CHART_MARGIN_PX)
        self.setMaximumHeight(MAX_ROW_PX * count + CHART_MARGIN_PX)

    def set_layers(
        self, layers: Sequence[LayerLatency], unattributed_s: tuple[float, float] | None = None
    ) -> None:
        """Draw the split of ``layers`` and, when given, the ``(float, current)`` seconds no
        layer accounts for as a last row (replaces the previous chart)."""
        self.clear()
        self.bars = {}
        self.layer_names = [layer.name for layer in layers]
        self.unattributed_s = unattributed_s if layers else None
        rows = list(range(len(layers)))
        left = [0.0] * len(layers)
        for field, label, colour in SPLIT_PARTS:
            widths = [getattr(layer, field) for layer in layers]
            self._bar(label, left, [r - 0.1 for r in rows], 0.55, widths, colour)
            left = [a + b for a, b in zip(left, widths, strict=True)]
        floats = [0.0 if math.isnan(layer.float_s) else layer.float_s for layer in layers]
        labels = [(row, f"{layer.name} ({layer.mode})") for row, layer in enumerate(layers)]
        if self.unattributed_s is not None:
            rest_float, rest_current = self.unattributed_s
            row = len(layers)
            self._bar(UNATTRIBUTED_ROW, [0.0], [row - 0.1], 0.55, [rest_current],
                      UNATTRIBUTED_COLOUR)  # fmt: skip
            floats.append(rest_float)
            labels.append((row, UNATTRIBUTED_ROW))
        count = len(labels)
        self._bar("torch float", [0.0] * count, [r + 0.3 for r in range(count)], 0.2, floats,
                  FLOAT_COLOUR)  # fmt: skip
        self.getAxis("left").setTicks([labels])
        self._fit_height(count)
        self.autoRange()
        self.setYRange(-0.6, max(count, 1) - 0.4, padding=0)

    def _bar(
        self, label: str, x0: list[float], y: list[float], height: float, widths: list[float],
        colour: str,
    ) -> None:  # fmt: skip
        bar = pg.BarGraphItem(x0=x0, y=y, height=height, width=widths, brush=colour, pen=None)
        self.addItem(bar)
        self.bars[label] = bar

    def stacked_totals_s(self) -> list[float]:
        """Right edge of each row's stacked bar in seconds, the "not in any layer" row last
        when drawn (what the chart shows; for tests)."""
        other = self.bars.get("other")
        if other is None:
            return []
        opts = other.opts
        totals = [float(x0 + w) for x0, w in zip(opts["x0"], opts["width"], strict=True)]
        rest = self.bars.get(UNATTRIBUTED_ROW)
        return totals + ([float(rest.opts["width"][0])] if rest is not None else [])

    def float_totals_s(self) -> list[float]:
        """Length of each row's torch float bar in seconds (for tests)."""
        bar = self.bars.get("torch float")
        return [] if bar is None else [float(w) for w in bar.opts["width"]]


class CurvesChart(pg.PlotWidget):  # type: ignore[misc]  # pyqtgraph is untyped
    """Live curves against epochs: one named line per series (e.g. train loss, val accuracy).

    ``y_range``: a fixed range for the values (accuracy in %), else the axis follows the data.
    ``legend_label`` names the series; put it above the chart.
    """

    def __init__(
        self, y_label: str, y_range: tuple[float, float] | None = None,
        parent: QWidget | None = None,
    ) -> None:  # fmt: skip
        super().__init__(parent)
        self.setBackground(None)
        self.y_range = y_range
        self.setLabel("bottom", "epoch")
        self.setLabel("left", y_label)
        for side in ("left", "bottom"):
            self.getAxis(side).enableAutoSIPrefix(False)
        self.showGrid(x=True, y=True, alpha=0.3)
        self.legend_label = _legend_label()
        self.series: dict[str, tuple[list[float], list[float], pg.PlotDataItem]] = {}
        self._colours = iter(SERIES_COLOURS)
        self.reset()

    def add_point(self, name: str, x: float, y: float) -> None:
        """Append ``(x, y)`` to series ``name`` (created on first use) and redraw it."""
        if name not in self.series:
            colour = next(self._colours, "#777777")
            item = self.plot([], [], name=name, pen=pg.mkPen(colour, width=2), symbol="o",
                             symbolSize=5, symbolBrush=colour)  # fmt: skip
            self.series[name] = ([], [], item)
            self._legend_entries.append((name, colour))
            self.legend_label.setText(legend_html(self._legend_entries))
        xs, ys, item = self.series[name]
        xs.append(x)
        ys.append(y)
        item.setData(xs, ys)

    def reset(self, epochs: int = 1) -> None:
        """Remove every series; the x axis spans ``0..epochs`` (the run about to start)."""
        for _, _, item in self.series.values():
            self.removeItem(item)
        self.series = {}
        self._colours = iter(SERIES_COLOURS)
        self._legend_entries: list[tuple[str, str]] = []
        self.legend_label.setText("")
        self.setXRange(0, max(epochs, 1), padding=0.02)
        if self.y_range is None:
            self.enableAutoRange(axis="y")
        else:
            self.setYRange(*self.y_range, padding=0.02)

    def x_range(self) -> tuple[float, float]:
        """The x axis' current range (for tests)."""
        low, high = self.getViewBox().viewRange()[0]
        return float(low), float(high)

    def y_view_range(self) -> tuple[float, float]:
        """The y axis' current range (for tests)."""
        low, high = self.getViewBox().viewRange()[1]
        return float(low), float(high)
