"""Live views of the selected layer (pyqtgraph), redrawn after every change.

``LayerViews`` listens to the session (selection, modes, data, weights, model), takes a
snapshot of the model on the GUI thread and computes ``xnorlab.lab.layerview.LayerView`` in a
worker (key ``"layer-view"``: a newer request cancels the older one and stale results are
dropped), then draws:

* weight histogram with the BWN weights ``alpha_c * sign(W)`` and ``+-mean alpha`` overlaid;
* per-output-filter alpha as bars;
* histogram of the layer's input on the sample batch with the sign threshold (0) and the
  near-zero band;
* the K map of sample 0 (what XNOR mode scales by) next to the model's input image;
* float vs binarized output of the layer on the same input (scatter, relative error, r).

The inputs are ``session.activation_inputs``: a seeded, class-stratified sample of the open
dataset or, without one, the bundled calibration photos (unlabelled; loaded in the worker).
The header and the summary say what the sample holds (items per class, seed), the input
image's caption which class its sample 0 is.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QGridLayout, QLabel, QVBoxLayout, QWidget

from xnorlab.gui import style
from xnorlab.gui.workers import TaskRunner
from xnorlab.lab.layerview import LayerView, compute_layer_view, view_batch_size
from xnorlab.lab.session import NO_INPUT_TEXT, ActivationInputs, InputKind, LabSession

PLOT_MIN_HEIGHT = 150
ALPHA = "\u03b1"  # the Greek letter, as in the paper


def _plot(title: str, x_label: str, y_label: str) -> pg.PlotWidget:
    widget = pg.PlotWidget()
    widget.setMinimumHeight(PLOT_MIN_HEIGHT)
    item = widget.getPlotItem()
    item.setTitle(title, size="9pt")
    item.setLabel("bottom", x_label)
    item.setLabel("left", y_label)
    item.showGrid(x=True, y=True, alpha=0.15)
    item.setMenuEnabled(False)
    for side in ("left", "bottom"):  # unitless axes: "value (x0.001)" read as another unit
        item.getAxis(side).enableAutoSIPrefix(False)
    style.style_plot(widget)
    return widget


def _brush(colour: str, alpha: int) -> Any:
    brush = pg.mkColor(colour)
    brush.setAlpha(alpha)
    return brush


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.1f}%"


NO_INPUTS = ActivationInputs(InputKind.NONE, NO_INPUT_TEXT)


def compute_view_on(model: Any, name: str, source: ActivationInputs, **kwargs: Any) -> LayerView:
    """Worker body: load ``source``'s batch (decodes the calibration photos), compute the view."""
    return compute_layer_view(model, name, source.load(), **kwargs)


CAPTION_LABEL_CHARS = 14  # a class name in the input caption (half a view's width)


def input_caption(source: ActivationInputs) -> str:
    """Caption of the input image beside the K map (short: each has half a view's width)."""
    if source.kind is InputKind.CALIBRATION:
        return "calibration photo 1"
    label = source.label_of(0)
    if not label:
        return "input (sample 0)"
    short = label if len(label) <= CAPTION_LABEL_CHARS else label[: CAPTION_LABEL_CHARS - 1] + "…"
    return f"sample 1 of {source.count}: {short}"


def kmap_caption(view: LayerView) -> str:
    """Caption of the K map: its size and whether the layer's mode uses it."""
    if view.kmap is None:
        beta = "" if view.beta is None else f", beta = {view.beta:.3g}"
        return f"linear: no K map{beta}"
    used = view.mode.value == "xnor" and view.config.scaling.value == "kmap"
    height, width = view.kmap.shape
    return f"K map {width}x{height} ({'used' if used else 'not used'})"


def is_cut(label: pg.LabelItem, view_width: int) -> bool:
    """Whether a pyqtgraph caption's text is wider than the room its layout gives it or runs
    past the edges of its view (a title grows beyond a narrow plot)."""
    text = label.item.mapRectToScene(label.item.boundingRect())
    outside = text.left() < -1 or text.right() > view_width + 1
    return bool(outside or label.item.boundingRect().width() > label.geometry().width() + 1)


class KMapView(pg.GraphicsLayoutWidget):  # type: ignore[misc]
    """The model input (sample 0) and the layer's K map side by side."""

    def __init__(self) -> None:
        super().__init__()
        self.setMinimumHeight(PLOT_MIN_HEIGHT)
        self.input_label = self.addLabel("input (sample 0)", row=0, col=0, size="9pt")
        self.kmap_label = self.addLabel("K map", row=0, col=1, size="9pt")
        self.input_box = self.addViewBox(row=1, col=0, lockAspect=True, invertY=True)
        self.kmap_box = self.addViewBox(row=1, col=1, lockAspect=True, invertY=True)
        self.input_item = pg.ImageItem()
        self.kmap_item = pg.ImageItem()
        self.kmap_item.setColorMap(pg.colormap.get("viridis"))
        self.input_box.addItem(self.input_item)
        self.kmap_box.addItem(self.kmap_item)
        for box in (self.input_box, self.kmap_box):
            box.setMouseEnabled(False, False)
            box.setMenuEnabled(False)

    def show_view(self, view: LayerView, caption: str = "input (sample 0)") -> None:
        if view.input_image is None:
            self.input_item.clear()
            self.input_label.setText("no input: open data", size="9pt")
        else:
            self.input_item.setImage(view.input_image, levels=(0.0, 1.0))
            self.input_label.setText(caption, size="9pt")
            self.input_box.autoRange(padding=0)
        if view.kmap is not None:
            self.kmap_item.setImage(view.kmap, autoLevels=True)
            self.kmap_box.autoRange(padding=0)
        else:
            self.kmap_item.clear()
        self.kmap_label.setText(kmap_caption(view), size="9pt")
        self.kmap_label.setToolTip(
            "K = mean over channels of |input|, box-filtered to the kernel (section 3.2): "
            "XNOR mode with kmap scaling multiplies each output position by it"
        )

    def cut_captions(self) -> list[str]:
        """Captions wider than the room they are given (for the layout checks)."""
        labels = (self.input_label, self.kmap_label)
        return [label.text for label in labels if is_cut(label, self.width())]


class LayerViews(QWidget):
    """All views of the selected layer; recomputed in a worker after each change."""

    updated = Signal(object)  # the LayerView just drawn

    def __init__(self, session: LabSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.runner = TaskRunner(self)
        self.current: LayerView | None = None
        self.source: ActivationInputs = NO_INPUTS  # the inputs of ``current``
        self.last_update_ms = math.nan  # request -> drawn, of the last update
        self._requested_at: float | None = None
        self._timer = QTimer(self, singleShot=True, interval=0)
        self._timer.timeout.connect(self._start)
        self._build()
        self._float_cache: dict[str, Any] = {}  # all-float run per layer; reset on new weights/data
        for signal in (session.model_changed, session.data_changed, session.weights_changed):
            signal.connect(self._reset_and_schedule)
        session.selection_changed.connect(lambda _name: self.schedule())
        session.modes_changed.connect(lambda _names: self.schedule())

    def _build(self) -> None:
        self.header = QLabel("Select a layer in the table", self)
        self.header.setTextFormat(Qt.TextFormat.RichText)
        self.weights = _plot("weights W and binarized alpha*sign(W)", "value", "count")
        self.alpha = _plot("alpha per output filter", "output filter", "alpha")
        self.activations = _plot("layer input on the sample batch", "value", "count")
        self.kmap = KMapView()
        self.output = _plot("layer output: float vs binarized", "float", "binarized")
        self.summary = QLabel(self)
        self.summary.setWordWrap(True)
        self.summary.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        grid = QGridLayout()
        for index, widget in enumerate(
            (self.weights, self.alpha, self.activations, self.kmap, self.output, self.summary)
        ):
            grid.addWidget(widget, index // 3, index % 3)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.header)
        layout.addLayout(grid, 1)

    # ------------------------------------------------------------------ scheduling
    def _reset_and_schedule(self) -> None:
        self._float_cache = {}  # a new dict: workers still running fill the old one
        self.schedule()

    def schedule(self) -> None:
        """Recompute the views soon (coalesces bursts of events)."""
        if self._requested_at is None:
            self._requested_at = time.perf_counter()
        task = self.runner.running("layer-view")
        if task is not None:
            task.supersede()
        self._timer.start()

    def busy(self) -> bool:
        """True while an update is pending or computing."""
        return self._timer.isActive() or self.runner.active > 0 or self._requested_at is not None

    def _start(self) -> None:
        name = self.session.selected
        if self.session.loaded is None or name is None:
            self._requested_at = None
            self._clear()
            return
        count = view_batch_size(sum(self.session.macs.values()))
        source = self.session.attempt(self.session.activation_inputs, count) or NO_INPUTS
        revision = self.session.revision
        self.header.setText(f"<b>{name}</b> &nbsp; updating…")
        self.runner.start(
            compute_view_on, self.session.snapshot(), name, source, key="layer-view",
            float_cache=self._float_cache,
            on_result=lambda view: self._ready(view, revision, source), on_error=self._failed,
        )  # fmt: skip

    def _ready(self, view: LayerView, revision: int, source: ActivationInputs) -> None:
        if revision != self.session.revision or view.name != self.session.selected:
            return  # stale: a newer request is already scheduled
        self.current, self.source = view, source
        self._draw(view)
        if self._requested_at is not None:
            self.last_update_ms = 1000 * (time.perf_counter() - self._requested_at)
            self._requested_at = None
        self._header(view)
        self.updated.emit(view)

    def _failed(self, message: str) -> None:
        self._requested_at = None
        self.header.setText(f"<b>views failed:</b> {message}")
        self.session.error.emit(message)

    def _clear(self) -> None:
        self.current, self.source = None, NO_INPUTS
        for plot in (self.weights, self.alpha, self.activations, self.output):
            plot.getPlotItem().clear()
        self.kmap.input_item.clear()
        self.kmap.kmap_item.clear()
        self.summary.setText("")
        self.header.setText("Select a layer in the table")

    # ------------------------------------------------------------------ drawing
    def redraw(self) -> None:
        """Draw the current view and its header again (after a theme change)."""
        if self.current is not None:
            self._draw(self.current)
            self._header(self.current)

    def _draw(self, view: LayerView) -> None:
        self._draw_weights(view)
        self._draw_alpha(view)
        self._draw_activations(view)
        self.kmap.show_view(view, input_caption(self.source))
        self._draw_output(view)
        self.summary.setText(self._summary(view, self.source))

    def _header(self, view: LayerView) -> None:
        colour = style.mode_colour(view.mode.value)
        config = view.config
        extra = (
            f", {config.scaling} scaling, {config.pad_mode} padding"
            if view.mode.value == ("xnor")
            else ""
        )
        samples = f"input: {self.source.description}" if view.sample_count else NO_INPUT_TEXT
        self.header.setText(
            f"<b>{view.name}</b> ({view.kind}) &nbsp; mode: <b style='color:{colour}'>"
            f"{view.mode.value.upper()}</b>{extra} &nbsp;·&nbsp; {samples} &nbsp;·&nbsp; "
            f"computed in {1000 * view.elapsed_s:.0f} ms, shown {self.last_update_ms:.0f} ms "
            f"after the change"
        )

    def _draw_weights(self, view: LayerView) -> None:
        t = style.theme()
        item = self.weights.getPlotItem()
        item.clear()
        hist, binary = view.weight_hist, view.binary_hist
        item.plot(hist.edges, hist.counts, stepMode="center", fillLevel=0,
                  brush=_brush(t.float_colour, 90), pen=pg.mkPen(t.float_colour))  # fmt: skip
        peak, binary_peak = max(1, int(hist.counts.max())), max(1, int(binary.counts.max()))
        scale = peak / binary_peak  # the two spikes would dwarf the float histogram
        item.plot(binary.edges, binary.counts * scale, stepMode="center",
                  pen=pg.mkPen(t.bwn_colour, width=2))  # fmt: skip
        mean = view.weight.alpha_mean
        for sign in (-1, 1):
            pen = pg.mkPen(t.accent, width=1.5, style=Qt.PenStyle.DashLine)
            item.addItem(pg.InfiniteLine(sign * mean, angle=90, pen=pen))
        item.setTitle(f"W (blue), {ALPHA}·sign(W) (orange, scaled), ±mean {ALPHA}", size="9pt")

    def _draw_alpha(self, view: LayerView) -> None:
        t = style.theme()
        item = self.alpha.getPlotItem()
        item.clear()
        x = np.arange(len(view.alpha))
        item.addItem(pg.BarGraphItem(x=x, height=view.alpha, width=0.8,
                                     brush=_brush(t.bwn_colour, 200), pen=None))  # fmt: skip
        item.setTitle(f"{ALPHA} = mean|W_c| of {view.weight.n_filters} filters", size="9pt")

    def _draw_activations(self, view: LayerView) -> None:
        t = style.theme()
        item = self.activations.getPlotItem()
        item.clear()
        if view.input_hist is None or view.sign is None:
            item.setTitle("input: open a dataset (Ctrl+D)", size="9pt")
            return
        hist = view.input_hist
        item.plot(hist.edges, hist.counts, stepMode="center", fillLevel=0,
                  brush=_brush(t.float_colour, 90), pen=pg.mkPen(t.float_colour))  # fmt: skip
        band = view.near_zero_threshold
        region = pg.LinearRegionItem((-band, band), movable=False,
                                     brush=_brush(t.xnor_colour, 60), pen=pg.mkPen(None))  # fmt: skip
        item.addItem(region)
        item.addItem(pg.InfiniteLine(0.0, angle=90, pen=pg.mkPen(t.xnor_colour, width=1.5)))
        s = view.sign
        what = "calibration photos" if self.source.kind is InputKind.CALIBRATION else "input"
        item.setTitle(
            f"{what}: {_pct(s.near_zero_fraction)} near 0 (red), {_pct(s.flip_rate)} flipped",
            size="9pt",
        )

    def _draw_output(self, view: LayerView) -> None:
        t = style.theme()
        item = self.output.getPlotItem()
        item.clear()
        out = view.output
        if out is None:
            item.setTitle("output: open a dataset (Ctrl+D)", size="9pt")
            return
        scatter = pg.ScatterPlotItem(out.float_values, out.binary_values, size=3, pen=None,
                                     brush=_brush(style.mode_colour(out.mode.value), 110))  # fmt: skip
        item.addItem(scatter)
        item.addItem(pg.InfiniteLine((0, 0), angle=45, pen=pg.mkPen(t.muted, width=1)))
        what = f"{out.mode.value.upper()} (preview)" if out.preview else out.mode.value.upper()
        item.setLabel("left", what)
        item.setTitle(
            f"output vs float: error {out.relative_error:.3g}, r = {out.correlation:.3f}",
            size="9pt",
        )

    @staticmethod
    def _summary(view: LayerView, source: ActivationInputs) -> str:
        w = view.weight
        inputs = source.description if view.sample_count else NO_INPUT_TEXT
        lines = [
            f"<b>{view.name}</b>: {view.kind}, mode {view.mode.value}",
            f"inputs: {inputs}",
            f"BWN approximation error ||W - alpha·sign(W)|| / ||W|| = {w.approx_error:.3f}",
            f"alpha: mean {w.alpha_mean:.4g}, min {w.alpha_min:.4g}, max {w.alpha_max:.4g}, "
            f"std {w.alpha_std:.3g} ({w.n_filters} filters); dashed lines: ±mean alpha",
        ]
        if view.kmap is not None:
            lo, hi = float(view.kmap.min()), float(view.kmap.max())
            lines.append(f"K map of sample 0: [{lo:.3g}, {hi:.3g}]")
        if view.sign is not None:
            sign = view.sign
            lines.append(f"input signs: {_pct(sign.near_zero_fraction)} near zero "
                         f"(|x| ≤ {view.near_zero_threshold:.3g}), {_pct(sign.positive_fraction)} "
                         f"≥ 0, {_pct(sign.flip_rate)} flipped vs the float model")  # fmt: skip
        if view.output is not None:
            out = view.output
            preview = " (what-if: the layer is float)" if out.preview else ""
            lines.append(f"layer error ({out.mode.value}{preview}): {out.relative_error:.3g}, "
                         f"r = {out.correlation:.3f}")  # fmt: skip
            lines.append(f"error vs the all-float model: {out.propagated_error:.3g}")
        if view.beta is not None:
            lines.append(f"linear input scale beta (sample 0): {view.beta:.4g}")
        return "<br>".join(lines)

    def cut_captions(self) -> list[str]:
        """Plot titles and image captions wider than their room (for the layout checks)."""
        cut = []
        for plot in (self.weights, self.alpha, self.activations, self.output):
            title = plot.getPlotItem().titleLabel
            if title.isVisible() and is_cut(title, plot.width()):
                cut.append(title.text)
        return cut + self.kmap.cut_captions()

    def shutdown(self) -> None:
        """Stop pending work (window close)."""
        self._timer.stop()
        self.runner.cancel_all()
