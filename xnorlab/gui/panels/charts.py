"""pyqtgraph charts of the panels: the per-layer latency split and live training curves."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

from xnorlab.measure.latency import LayerLatency

# (field of LayerLatency, legend label, colour): the stacking order, left to right
SPLIT_PARTS: tuple[tuple[str, str, str], ...] = (
    ("pack_s", "pack", "#4c72b0"),
    ("popcount_s", "popcount", "#dd8452"),
    ("scale_s", "scaling", "#55a868"),
    ("other_s", "other", "#8c8c8c"),
)
FLOAT_COLOUR = "#c44e52"
LEGEND_COLUMNS = 3
LEGEND_ROWS = 2.6  # layer rows kept free above the first bar for the legend
ROW_PX = 26  # pixels per layer: readable names however many layers there are
CHART_MARGIN_PX = 60  # bottom axis and its label


class LatencySplitChart(pg.PlotWidget):  # type: ignore[misc]  # pyqtgraph is untyped
    """Horizontal stacked bars, one per layer: pack / popcount / scaling / other (seconds).

    A thin red bar under each layer shows its torch float time for comparison. The chart asks
    for ``ROW_PX`` per layer; put it in a scroll area for deep models.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setBackground(None)
        self.setLabel("bottom", "time per forward pass", units="s")
        self.getPlotItem().invertY(True)
        self.showGrid(x=True, y=False, alpha=0.3)
        self.legend = self.addLegend(offset=(10, 2), colCount=LEGEND_COLUMNS)
        self.bars: dict[str, pg.BarGraphItem] = {}
        self.layer_names: list[str] = []

    def set_layers(self, layers: Sequence[LayerLatency]) -> None:
        """Draw the split of ``layers`` (replaces the previous chart)."""
        self.clear()
        self.legend.clear()
        self.bars = {}
        self.layer_names = [layer.name for layer in layers]
        rows = list(range(len(layers)))
        left = [0.0] * len(layers)
        for field, label, colour in SPLIT_PARTS:
            widths = [getattr(layer, field) for layer in layers]
            bar = pg.BarGraphItem(
                x0=left, y=[r - 0.1 for r in rows], height=0.55, width=widths, brush=colour,
                pen=None,
            )  # fmt: skip
            self.addItem(bar)
            self.legend.addItem(bar, label)
            self.bars[label] = bar
            left = [a + b for a, b in zip(left, widths, strict=True)]
        floats = [0.0 if math.isnan(layer.float_s) else layer.float_s for layer in layers]
        float_bar = pg.BarGraphItem(
            x0=[0.0] * len(layers), y=[r + 0.3 for r in rows], height=0.2, width=floats,
            brush=FLOAT_COLOUR, pen=None,
        )  # fmt: skip
        self.addItem(float_bar)
        self.legend.addItem(float_bar, "torch float")
        self.bars["torch float"] = float_bar
        labels = [(row, f"{layer.name} ({layer.mode})") for row, layer in enumerate(layers)]
        self.getAxis("left").setTicks([labels])
        self.setMinimumHeight(int(ROW_PX * (len(layers) + LEGEND_ROWS)) + CHART_MARGIN_PX)
        self.autoRange()
        self.setYRange(-LEGEND_ROWS, max(len(layers), 1) - 0.4, padding=0)  # top: the legend

    def stacked_totals_s(self) -> list[float]:
        """Right edge of each layer's stacked bar in seconds (what the chart shows; for tests)."""
        other = self.bars.get("other")
        if other is None:
            return []
        opts = other.opts
        return [float(x0 + w) for x0, w in zip(opts["x0"], opts["width"], strict=True)]


class CurvesChart(pg.PlotWidget):  # type: ignore[misc]  # pyqtgraph is untyped
    """Live curves against epochs: one named line per series (e.g. train loss, val accuracy)."""

    def __init__(self, y_label: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setBackground(None)
        self.setLabel("bottom", "epoch")
        self.setLabel("left", y_label)
        self.getAxis("left").enableAutoSIPrefix(False)
        self.showGrid(x=True, y=True, alpha=0.3)
        self.addLegend(offset=(-10, 10))
        self.series: dict[str, tuple[list[float], list[float], pg.PlotDataItem]] = {}
        self._colours = iter(("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3"))

    def add_point(self, name: str, x: float, y: float) -> None:
        """Append ``(x, y)`` to series ``name`` (created on first use) and redraw it."""
        if name not in self.series:
            colour = next(self._colours, "#444444")
            item = self.plot([], [], name=name, pen=pg.mkPen(colour, width=2), symbol="o",
                             symbolSize=5, symbolBrush=colour)  # fmt: skip
            self.series[name] = ([], [], item)
        xs, ys, item = self.series[name]
        xs.append(x)
        ys.append(y)
        item.setData(xs, ys)

    def reset(self) -> None:
        """Remove every series."""
        for _, _, item in self.series.values():
            self.removeItem(item)
        self.series = {}
        self._colours = iter(("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3"))
