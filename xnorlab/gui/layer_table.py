"""The layer table: every binarizable layer, its editable mode and its measured numbers.

``LayerTableModel`` (a ``QAbstractTableModel``) presents the session's layers; editing the mode
column calls ``session.set_mode`` and the table redraws from the session's ``modes_changed``
event (one data flow in both directions). ``LayerTable`` adds the view with a combo-box
delegate per row, and computes the slow columns in workers on a snapshot: statistics
(``xnorlab.lab.layerview.compute_table_stats``) and then latency
(``xnorlab.measure.latency.measure_latency``); stale results are dropped. The error columns run on
``session.activation_inputs``: a stratified dataset sample or, without a dataset, the bundled
calibration photos (loaded in the worker; their tooltips name the source).

On demand (``start_sensitivity``: Layers > Measure sensitivity) a worker measures each layer's
cost both ways (``xnorlab.measure.sensitivity``: binarize alone, restore alone; two
evaluations per layer, cancellable); two columns, hidden until then, show it in points of
top-1 with the paired 95 % interval (positive = binarizing the layer makes the model worse;
greyed = within noise) and sort by it. After a change of modes, weights or data they stay,
greyed, until measured again.

Warnings: an XNOR layer whose input was never negative on the sample gets a warning icon and
``NONNEGATIVE_INPUT_HINT`` in its tooltip (sign() makes its whole input +1). Conv2d/Linear
layers that cannot be binarized (``session.fixed_layers``, e.g. vit_b_16's attention
``out_proj``) are listed after the others as "not binarizable" with the reason, never with a
mode editor.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import (
    QAbstractItemModel,
    QAbstractTableModel,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QColor, QFont, QIcon, QResizeEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QComboBox,
    QHeaderView,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from xnorlab.binary.modes import Mode
from xnorlab.binary.stats import NONNEGATIVE_INPUT_HINT
from xnorlab.binary.surgery import LayerInfo
from xnorlab.common.errors import XnorlabError
from xnorlab.gui import style
from xnorlab.gui.sensitivity_bar import SensitivityBar
from xnorlab.gui.workers import Task, TaskRunner
from xnorlab.lab.layerview import LayerRowStats, compute_table_stats, view_batch_size
from xnorlab.lab.session import ActivationInputs, LabSession
from xnorlab.measure.intervals import PairedDifference
from xnorlab.measure.latency import LatencyReport, measure_latency
from xnorlab.measure.sensitivity import LayerSensitivity, SensitivityReport, measure_sensitivity

STATS_DELAY_MS = 150  # debounce: a burst of toggles triggers one recomputation
SENSITIVITY_SAMPLES = 1000  # items per evaluation (two evaluations per layer)
NOT_BINARIZABLE = "not binarizable"
ROW_PX = 26
ELASTIC_COLUMNS = ("name", "alpha", "shape")  # narrowed (elided) when the view is too small
MIN_ELASTIC_PX = 70
TITLE_PAD_PX = 14  # a column title's margins, without the sort arrow's room
MODE_NAMES = [m.value for m in Mode]
DASH = "\u2013"  # shown when a value does not apply
SORT_ROLE = int(Qt.ItemDataRole.UserRole)
IndexLike = QModelIndex | QPersistentModelIndex


@dataclass(frozen=True)
class Column:
    key: str
    title: str  # two lines where a column would be wider for its title than for its numbers
    tip: str


COLUMNS = (
    Column("name", "Layer", "Dotted module name"),
    Column("kind", "Type", "conv2d or linear"),
    Column("shape", "Weight\nshape", "(C_out, C_in/groups, kh, kw) or (out, in)"),
    Column("params", "Params", "Weight + bias elements"),
    Column("macs", "MACs", "Multiply-accumulates for one input"),
    Column("mode", "Mode", "float / BWN (binary weights) / XNOR (binary weights and inputs)"),
    Column("alpha", "\u03b1 mean\n[min, max]", "Per-filter weight scale alpha = mean|W_c| (eq. 4)"),
    Column("flip", "Sign\nflips", "Share of the layer's input signs that differ from the "
           "all-float model on the sample batch"),
    Column("local", "Layer\nerr", "||y_mode - y_float|| / ||y_float|| on the same input"),
    Column("prop", "Err vs\nfloat", "Output vs the all-float model's (errors accumulate)"),
    Column("binarize", "Binarize\nalone", "Top-1 points lost when only this layer is binarized "
           "(in its mode; XNOR when it is float) and every other layer is float; "
           "+ = binarizing it makes the model worse. 95 % paired interval; greyed: within "
           "noise (McNemar p >= 0.05), bold: exceeds noise"),
    Column("restore", "Restore\nalone", "Top-1 points this layer costs where it is: the "
           "configured model vs the same with only this layer float; + = binarizing it makes "
           "the model worse. 95 % paired interval; greyed: within noise, bold: exceeds noise"),
    Column("float_ms", "Float\nms", "Measured layer time, torch float, batch 1"),
    Column("current_ms", "Current\nms", "Measured layer time in the current mode (native "
           "engine when available), batch 1"),
)  # fmt: skip
COL = {c.key: i for i, c in enumerate(COLUMNS)}
NUMERIC = {"params", "macs", "flip", "local", "prop", "float_ms", "current_ms", "alpha",
           "binarize", "restore"}  # fmt: skip
SENSITIVITY = ("binarize", "restore")
OUTDATED = "Measured for an earlier configuration or data (greyed): measure again."
NO_COST = -2.0  # sorts below every cost (a cost is a difference of two top-1s, >= -1)


def _shape(shape: tuple[int, ...]) -> str:
    return "\u00d7".join(str(d) for d in shape)


def _count(value: int) -> str:
    """``2,570``, ``36.86 k``, ``115.6 M``: four digits at most, so the count columns leave
    room for the layer names (the exact count is in the tooltip)."""
    if value < 10_000:
        return f"{value:,}"
    if value < 1_000_000:
        return f"{value / 1e3:.4g} k"
    return f"{value / 1e6:.4g} M"


def _pct(value: float) -> str:
    return DASH if math.isnan(value) else f"{100 * value:.1f}%"


def _num(value: float, digits: int = 3) -> str:
    return DASH if math.isnan(value) else f"{value:.{digits}g}"


def _ms(seconds: float | None) -> str:
    return "…" if seconds is None or math.isnan(seconds) else f"{1000 * seconds:.3f}"


def cost_text(diff: PairedDifference) -> str:
    """``+1.2 [0.6, 2.0]``: a cost in points of top-1 and its 95 % paired interval."""
    low, high = diff.interval
    return f"{100 * diff.cost:+.1f} [{100 * low:.1f}, {100 * high:.1f}]"


def warning_icon() -> QIcon:
    """The style's warning icon (shown beside a layer the table warns about)."""
    return QApplication.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning)


def compute_stats_on(
    model: Any, source: ActivationInputs | None, **kwargs: Any
) -> dict[str, LayerRowStats]:
    """Worker body: load ``source``'s batch (decodes the calibration photos), compute the rows."""
    return compute_table_stats(model, None if source is None else source.load(), **kwargs)


class LayerTableModel(QAbstractTableModel):
    """Rows = binarizable layers of the session's model."""

    def __init__(self, session: LabSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.infos: list[LayerInfo] = []
        self.switchable: set[str] = set()
        self.stats: dict[str, LayerRowStats] = {}
        self.latency: dict[str, tuple[float, float]] = {}  # name -> (float_s, current_s)
        self.stats_stale = True
        self.latency_note = ""
        self.inputs_note = ""  # where the error columns' inputs come from
        self.fixed: dict[str, str] = {}  # layers that cannot be binarized -> why
        self.sensitivity: dict[str, LayerSensitivity] = {}
        self.sensitivity_stale = False  # measured for an earlier configuration or data
        self.sensitivity_note = ""  # what the sensitivity was measured on
        self.reload()

    # ------------------------------------------------------------------ session -> table
    def reload(self) -> None:
        """Re-read every row (new model): the binarizable layers, then those that are not."""
        self.beginResetModel()
        fixed = self.session.fixed_layers()
        self.infos = self.session.layers() + [info for info, _ in fixed]
        self.fixed = {info.name: reason for info, reason in fixed}
        self.switchable = set(self.session.configs())  # only wrapped layers get a mode editor
        self.stats, self.latency, self.stats_stale = {}, {}, True
        self.sensitivity, self.sensitivity_stale, self.sensitivity_note = {}, False, ""
        self.endResetModel()

    def refresh_modes(self, names: list[str]) -> None:
        """Re-read the modes of ``names``; every computed column becomes stale."""
        fresh = {info.name: info for info in self.session.layers()}
        for row, info in enumerate(self.infos):
            if info.name in names and info.name in fresh:
                self.infos[row] = fresh[info.name]
                # name to mode: the name's colour follows the mode, the mode cell updates
                # its open editor
                self.dataChanged.emit(self.index(row, COL["name"]), self.index(row, COL["mode"]))
        self.mark_stale()

    def mark_stale(self) -> None:
        """Grey out the computed columns until new results arrive."""
        self.stats_stale = True
        self._computed_changed()

    def set_stats(self, stats: dict[str, LayerRowStats], inputs_note: str = "") -> None:
        self.stats, self.stats_stale, self.inputs_note = stats, False, inputs_note
        self._computed_changed()

    def set_latency(self, latency: dict[str, tuple[float, float]], note: str = "") -> None:
        self.latency, self.latency_note = latency, note
        self._computed_changed()

    def set_sensitivity(self, report: SensitivityReport, note: str, stale: bool) -> None:
        """Show each layer's cost both ways (``stale``: measured for an earlier state)."""
        self.sensitivity = {layer.name: layer for layer in report.layers}
        self.sensitivity_note, self.sensitivity_stale = note, stale
        self._computed_changed()

    def mark_sensitivity_stale(self) -> None:
        if self.sensitivity and not self.sensitivity_stale:
            self.sensitivity_stale = True
            self._computed_changed()

    def input_never_negative(self, info: LayerInfo) -> bool:
        """An XNOR layer whose input was never negative on the sample (a constant +1 input)."""
        row = self.stats.get(info.name)
        return info.mode is Mode.XNOR and row is not None and bool(row.input_never_negative)

    def _computed_changed(self) -> None:
        if self.infos:
            first, last = (
                self.index(0, COL["alpha"]),
                self.index(len(self.infos) - 1, COL["current_ms"]),
            )
            self.dataChanged.emit(first, last)

    def row_of(self, name: str) -> int:
        """Row of layer ``name`` (-1 if absent)."""
        return next((r for r, info in enumerate(self.infos) if info.name == name), -1)

    # ------------------------------------------------------------------ Qt model API
    def rowCount(self, parent: IndexLike = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.infos)

    def columnCount(self, parent: IndexLike = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(COLUMNS):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section].title
        if role == Qt.ItemDataRole.ToolTipRole:
            return COLUMNS[section].tip
        return None

    def flags(self, index: IndexLike) -> Qt.ItemFlag:
        base = super().flags(index)
        if index.isValid() and index.column() == COL["mode"] and self._switchable(index.row()):
            return base | Qt.ItemFlag.ItemIsEditable
        return base

    def editable_rows(self) -> list[int]:
        """Rows whose mode can be switched (they get a combo box)."""
        return [row for row in range(len(self.infos)) if self._switchable(row)]

    def _switchable(self, row: int) -> bool:
        return self.infos[row].name in self.switchable

    def is_fixed(self, row: int) -> bool:
        """Whether row ``row`` is a layer that cannot be binarized."""
        return self.infos[row].name in self.fixed

    def data(self, index: IndexLike, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self.infos):
            return None
        info, key = self.infos[index.row()], COLUMNS[index.column()].key
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.EditRole):
            return self._text(info, key)
        if role == Qt.ItemDataRole.TextAlignmentRole and key in NUMERIC:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole:
            return self._foreground(info, key)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(info, key)
        if role == Qt.ItemDataRole.DecorationRole and key == "name":
            return warning_icon() if self.input_never_negative(info) else None
        if role == Qt.ItemDataRole.FontRole and key in SENSITIVITY:
            return self._cost_font(info, key)
        if role == SORT_ROLE:
            return self._sort_key(info, key, index.row())
        return None

    def _sort_key(self, info: LayerInfo, key: str, row: int) -> float | str:
        """What a column sorts by: the layer order for names, numbers for numeric columns."""
        if key == "name":
            return float(row)
        if key in ("kind", "shape"):
            return self._text(info, key)
        if key == "mode":
            return float(MODE_NAMES.index(info.mode.value))
        if key in ("params", "macs"):
            return float(info.params if key == "params" else self.session.macs.get(info.name, 0))
        if key in ("float_ms", "current_ms"):
            pair = self.latency.get(info.name)
            return -1.0 if pair is None else float(pair[key == "current_ms"])
        if key in SENSITIVITY:
            diff = self._cost(info, key)
            return NO_COST if diff is None else float(diff.cost)
        row_stats = self.stats.get(info.name)
        if row_stats is None:
            return -1.0
        value = {
            "alpha": row_stats.alpha_mean, "flip": row_stats.flip_rate,
            "local": row_stats.local_error, "prop": row_stats.propagated_error,
        }[key]  # fmt: skip
        return -1.0 if math.isnan(value) else float(value)

    def setData(self, index: IndexLike, value: Any, role: int = Qt.ItemDataRole.EditRole) -> bool:
        if not index.isValid() or index.column() != COL["mode"]:
            return False
        name = self.infos[index.row()].name
        result = self.session.attempt(self.session.set_mode, name, str(value))
        return result is not None  # the table itself updates from modes_changed

    # ------------------------------------------------------------------ cell contents
    def _cost(self, info: LayerInfo, key: str) -> PairedDifference | None:
        layer = self.sensitivity.get(info.name)
        if layer is None:
            return None
        return layer.binarize_alone if key == "binarize" else layer.restore_alone

    def _cost_font(self, info: LayerInfo, key: str) -> QFont | None:
        diff = self._cost(info, key)
        if diff is None or not diff.exceeds_noise or self.sensitivity_stale:
            return None
        font = QFont()
        font.setBold(True)
        return font

    def _sensitivity_text(self, info: LayerInfo, key: str) -> str:
        if info.name not in self.sensitivity:
            return DASH
        diff = self._cost(info, key)
        return f"{DASH} (float)" if diff is None else cost_text(diff)

    def _text(self, info: LayerInfo, key: str) -> str:
        macs = self.session.macs.get(info.name)
        fixed = {
            "name": info.name, "kind": info.kind, "shape": _shape(info.weight_shape),
            "params": _count(info.params), "macs": DASH if macs is None else _count(macs),
            "mode": NOT_BINARIZABLE if info.name in self.fixed else str(info.mode),
        }  # fmt: skip
        if key in fixed:
            return fixed[key]
        if info.name in self.fixed:
            return DASH  # nothing to compare: the layer is float whatever the modes
        if key in SENSITIVITY:
            return self._sensitivity_text(info, key)
        if key in ("float_ms", "current_ms"):
            pair = self.latency.get(info.name)
            return _ms(None if pair is None else pair[key == "current_ms"])
        row = self.stats.get(info.name)
        if row is None:
            return "…"
        if key == "alpha":
            return f"{_num(row.alpha_mean)} [{_num(row.alpha_min, 2)}, {_num(row.alpha_max, 2)}]"
        if info.mode is Mode.FLOAT and key == "local":
            return "0 (float)"
        value = {"flip": row.flip_rate, "local": row.local_error, "prop": row.propagated_error}
        return _pct(value[key]) if key == "flip" else _num(value[key])

    def _foreground(self, info: LayerInfo, key: str) -> QColor | None:
        t = style.theme()
        if info.name in self.fixed:
            return QColor(t.muted)
        if key == "name" and self.input_never_negative(info):
            return QColor(t.error_fg)
        if key in SENSITIVITY:
            diff = self._cost(info, key)
            quiet = diff is None or not diff.exceeds_noise or self.sensitivity_stale
            return QColor(t.muted) if quiet else None
        if key == "mode":
            return QColor(style.mode_colour(str(info.mode), t))
        computed = key in ("alpha", "flip", "local", "prop")
        if computed and self.stats_stale:
            return QColor(t.muted)
        if info.position and key == "name":
            return QColor(t.muted) if info.mode is Mode.FLOAT else QColor(t.xnor_colour)
        return None

    def _tooltip(self, info: LayerInfo, key: str) -> str:
        tip = COLUMNS[COL[key]].tip
        if info.name in self.fixed:
            return f"{info.name}: {NOT_BINARIZABLE}, it stays float: {self.fixed[info.name]}"
        if key in SENSITIVITY:
            return self._sensitivity_tip(info, key, tip)
        if key == "name":
            tip = info.name  # the full name of an elided one
            if info.position:
                tip = f"{tip}: the model's {info.position} layer (the paper keeps it float)"
            if self.input_never_negative(info):
                tip = f"{tip}\n\u26a0 {NONNEGATIVE_INPUT_HINT}"
        if key in ("params", "macs"):
            count = info.params if key == "params" else self.session.macs.get(info.name, 0)
            tip = f"{tip}: {count:,}"
        if key in ("float_ms", "current_ms") and self.latency_note:
            tip = f"{tip}\n{self.latency_note}"
        if key in ("flip", "local", "prop") and self.inputs_note:
            tip = f"{tip}\ninputs: {self.inputs_note}"
        if key in ("alpha", "flip", "local", "prop") and self.stats_stale:
            tip = f"{tip}\n(recomputing…)"
        if key == "mode" and self.session.modes_locked:
            tip = f"{tip}\nlocked: {self.session.lock_reason}"
        return tip

    def _sensitivity_tip(self, info: LayerInfo, key: str, tip: str) -> str:
        layer = self.sensitivity.get(info.name)
        if layer is None:
            return f"{tip}\nLayers > Measure sensitivity (two evaluations per layer)"
        diff = self._cost(info, key)
        if diff is None:
            what = "float in the configuration: nothing to restore"
        else:
            what = diff.text()
            if key == "binarize":
                what = f"binarized alone as {layer.alone_mode}: {what}"
        tip = f"{tip}\n{what}\nsample: {self.sensitivity_note}"
        if self.sensitivity_stale:
            tip += "\nmeasured for an earlier configuration or data: measure again"
        return tip


class ModeDelegate(QStyledItemDelegate):
    """A combo box (float / bwn / xnor) that commits as soon as the user picks an entry."""

    def createEditor(
        self, parent: QWidget, option: QStyleOptionViewItem, index: IndexLike
    ) -> QWidget:
        combo = QComboBox(parent)
        combo.addItems(MODE_NAMES)
        combo.setObjectName("mode-combo")
        combo.activated.connect(lambda _i, c=combo: self.commitData.emit(c))
        return combo

    def setEditorData(self, editor: QWidget, index: IndexLike) -> None:
        if isinstance(editor, QComboBox):
            value = str(index.data(Qt.ItemDataRole.EditRole))
            if editor.currentText() != value:
                editor.blockSignals(True)
                editor.setCurrentIndex(
                    max(0, MODE_NAMES.index(value) if value in MODE_NAMES else 0)
                )
                editor.blockSignals(False)

    def setModelData(self, editor: QWidget, model: QAbstractItemModel, index: IndexLike) -> None:
        text = editor.currentText() if isinstance(editor, QComboBox) else ""
        accepted = model.setData(index, text, Qt.ItemDataRole.EditRole)
        if not accepted:
            self.setEditorData(editor, index)  # refused: show the real mode again


class LayerTable(QWidget):
    """Table view + model + the workers that fill the computed columns."""

    busy_changed = Signal(bool)
    height_changed = Signal()  # the sensitivity strip appeared, changed or went: refit the table

    def __init__(self, session: LabSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.model = LayerTableModel(session, self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.view = QTableView(self)
        self.delegate = ModeDelegate(self.view)
        self.runner = TaskRunner(self)
        self.sensitivity_task: Task | None = None
        self.bar = SensitivityBar(self)
        self.bar.cancel_button.clicked.connect(self.cancel_sensitivity)
        self.bar.again_button.clicked.connect(self.start_sensitivity)
        self.bar.hide_button.clicked.connect(self.hide_sensitivity)
        self._timer = QTimer(self, singleShot=True, interval=STATS_DELAY_MS)
        self._timer.timeout.connect(self.start_stats)
        self._syncing = False
        self.defer: Callable[[], bool] = lambda: False  # e.g. "the layer views are busy"
        self._setup_view()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.bar)
        layout.addWidget(self.view)
        session.model_changed.connect(self._on_model_changed)
        session.modes_changed.connect(self._on_modes_changed)
        session.data_changed.connect(self._on_weights_or_data)
        session.weights_changed.connect(self._on_weights_or_data)
        session.selection_changed.connect(self._on_session_selection)
        session.lock_changed.connect(self._on_lock_changed)
        self._on_model_changed()

    def _setup_view(self) -> None:
        view = self.view
        view.setModel(self.proxy)
        view.setSortingEnabled(True)
        view.sortByColumn(COL["name"], Qt.SortOrder.AscendingOrder)  # the model's layer order
        view.horizontalHeader().sortIndicatorChanged.connect(lambda *_: self.fit_columns())
        view.setItemDelegateForColumn(COL["mode"], self.delegate)
        view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        view.setAlternatingRowColors(True)
        view.verticalHeader().setVisible(False)
        view.verticalHeader().setDefaultSectionSize(ROW_PX)
        view.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # "layer4…conv2" keeps both ends
        header = view.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        for key in SENSITIVITY:  # shown once measured (on demand: two evaluations per layer)
            view.setColumnHidden(COL[key], True)
        view.selectionModel().currentRowChanged.connect(self._on_current_row)

    # ------------------------------------------------------------------ session events
    def _on_model_changed(self) -> None:
        self.runner.cancel_all()
        self.model.reload()
        self.hide_sensitivity()
        for row in self.model.editable_rows():
            self.view.openPersistentEditor(self.view_index(row, COL["mode"]))
        self._on_lock_changed(self.session.lock_reason)
        self.fit_columns()
        self.schedule()

    def mode_editors(self) -> list[QComboBox]:
        """The open mode combo boxes, in source row order."""
        editors = []
        for row in self.model.editable_rows():
            widget = self.view.indexWidget(self.view_index(row, COL["mode"]))
            if isinstance(widget, QComboBox):
                editors.append(widget)
        return editors

    def _on_lock_changed(self, reason: str) -> None:
        """While the session's modes are locked the combos are disabled and say why."""
        for combo in self.mode_editors():
            combo.setEnabled(not reason)
            combo.setToolTip(f"locked: {reason}" if reason else COLUMNS[COL["mode"]].tip)

    def fit_columns(self) -> None:
        """Columns as wide as their contents; when that is wider than the view, first the
        columns whose title is wider than their numbers give up the room Qt keeps in every
        title for the sort arrow (drawn only in the sorted column), then the text columns
        (name, alpha, shape) give up the rest in proportion to what they can spare, elided in
        the middle, so the timing columns at the right stay in view."""
        view, header = self.view, self.view.horizontalHeader()
        view.resizeColumnsToContents()
        self._widen_mode_column()
        widths = [view.columnWidth(c) for c in range(len(COLUMNS))]
        excess = sum(widths) - view.viewport().width()
        if excess > 0:
            excess -= self._tighten_titles(widths, excess)
        columns = [COL[key] for key in ELASTIC_COLUMNS]
        floors = {
            c: max(MIN_ELASTIC_PX, header.sectionSizeFromContents(c).width()) for c in columns
        }
        spare = {c: max(0, widths[c] - floors[c]) for c in columns}
        total = sum(spare.values())
        if excess <= 0 or total == 0:
            return
        share = min(1.0, excess / total)
        for column in columns:
            view.setColumnWidth(column, widths[column] - math.ceil(share * spare[column]))

    def _tighten_titles(self, widths: list[int], excess: int) -> int:
        """Narrow title-bound columns (not the sorted one, not the mode's combo) to their title
        text plus ``TITLE_PAD_PX`` or their contents, up to ``excess`` pixels; returns the
        pixels given up (``widths`` is updated)."""
        view, header = self.view, self.view.horizontalHeader()
        metrics = header.fontMetrics()
        given = 0
        for column, spec in enumerate(COLUMNS):
            if given >= excess or column == header.sortIndicatorSection() or spec.key == "mode":
                continue
            if view.isColumnHidden(column) or spec.key in ELASTIC_COLUMNS:
                continue
            title = metrics.size(0, spec.title).width() + TITLE_PAD_PX
            target = max(view.sizeHintForColumn(column), title)
            cut = min(widths[column] - target, excess - given)
            if cut > 0:
                widths[column] -= cut
                view.setColumnWidth(column, widths[column])
                given += cut
        return given

    def resizeEvent(self, event: QResizeEvent) -> None:  # Qt override
        super().resizeEvent(event)
        self.fit_columns()

    def rows_height(self, rows: int | None = None) -> int:
        """Pixels the table needs to show ``rows`` rows (default: all) without scrolling, the
        sensitivity strip included when it shows."""
        count = self.model.rowCount() if rows is None else rows
        header = self.view.horizontalHeader().sizeHint().height()
        frame = 2 * self.view.frameWidth()
        bar = 0
        if self.bar.isVisibleTo(self):  # its text wraps: its height depends on the width
            bar = self.bar.heightForWidth(self.width())
            bar = bar if bar > 0 else self.bar.sizeHint().height()
        return bar + header + frame + count * self.view.verticalHeader().defaultSectionSize()

    def view_index(self, row: int, column: int) -> QModelIndex:
        """The view's (sorted) index of source row ``row``."""
        return self.proxy.mapFromSource(self.model.index(row, column))

    def source_row(self, view_index: QModelIndex) -> int:
        """The source row of a view index (-1 if invalid)."""
        return self.proxy.mapToSource(view_index).row() if view_index.isValid() else -1

    def _widen_mode_column(self) -> None:
        self.view.setColumnWidth(COL["mode"], max(90, self.view.columnWidth(COL["mode"])))
        for key in ("float_ms", "current_ms"):
            self.view.setColumnWidth(COL[key], max(80, self.view.columnWidth(COL[key])))

    def _on_modes_changed(self, names: list[str]) -> None:
        for key in ("table-stats", "table-latency"):
            task = self.runner.running(key)
            if task is not None:
                task.supersede()
        self.model.refresh_modes(names)
        self._sensitivity_outdated()
        self.schedule()

    def _on_weights_or_data(self) -> None:
        self._sensitivity_outdated()
        self.schedule()

    def _on_session_selection(self, name: str | None) -> None:
        row = -1 if name is None else self.model.row_of(name)
        current = self.source_row(self.view.currentIndex())
        if row == current:
            return
        self._syncing = True
        try:
            if row < 0:
                self.view.clearSelection()
            else:
                self.view.selectionModel().setCurrentIndex(
                    self.view_index(row, 0),
                    QItemSelectionModel.SelectionFlag.ClearAndSelect
                    | QItemSelectionModel.SelectionFlag.Rows,
                )
                self.view.scrollTo(self.view_index(row, 0))
        finally:
            self._syncing = False

    def _on_current_row(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if self._syncing or not current.isValid():
            return
        row = self.source_row(current)
        if self.model.is_fixed(row):
            return  # no views for a layer that cannot switch: its tooltip says why
        self.session.attempt(self.session.select, self.model.infos[row].name)

    # ------------------------------------------------------------------ workers
    def schedule(self) -> None:
        """Recompute the statistics and latency columns soon (debounced)."""
        self.model.mark_stale()
        self._timer.start()
        self.busy_changed.emit(True)

    def busy(self) -> bool:
        """True while a recomputation is pending or running."""
        return self._timer.isActive() or self.runner.active > 0

    def _inputs(self) -> ActivationInputs | None:
        count = view_batch_size(sum(self.session.macs.values()))
        return self.session.attempt(self.session.activation_inputs, count)

    def start_stats(self) -> None:
        """Start the statistics worker on a snapshot of the live model."""
        if self.defer():
            self._timer.start()  # the layer views go first: they are what the user watches
            return
        if self.session.loaded is None or not self.model.infos:
            self.busy_changed.emit(False)
            return
        revision, source = self.session.revision, self._inputs()
        note = "" if source is None else source.description
        self.runner.start(
            compute_stats_on, self.session.snapshot(), source, key="table-stats",
            on_result=lambda stats: self._stats_ready(stats, revision, note),
            on_error=self.session.error.emit, on_finished=self._maybe_idle,
        )  # fmt: skip

    def _stats_ready(self, stats: dict[str, LayerRowStats], revision: int, note: str = "") -> None:
        if revision != self.session.revision:
            return  # the model changed meanwhile; a newer computation is scheduled
        first = not self.model.stats
        self.model.set_stats(stats, note)
        if first:
            self.fit_columns()
        self.start_latency()

    def start_latency(self) -> None:
        """Measure per-layer latency, float vs current mode, in a worker (after the stats)."""
        revision = self.session.revision
        self.runner.start(
            measure_latency, self.session.snapshot(), self.session.input_shape, batch=1,
            repeats=3, warmup=1, profile_runs=3, key="table-latency",
            on_result=lambda report: self._latency_ready(report, revision),
            on_error=lambda message: self.model.set_latency({}, f"latency failed: {message}"),
            on_finished=self._maybe_idle,
        )  # fmt: skip

    def _latency_ready(self, report: LatencyReport, revision: int) -> None:
        if revision != self.session.revision:
            return
        latency = {layer.name: (layer.float_s, layer.current_s) for layer in report.layers}
        self.model.set_latency(latency, f"engine: {report.engine}; median of 3 runs")

    def _maybe_idle(self) -> None:
        if not self.busy():
            self.busy_changed.emit(False)

    # ------------------------------------------------------------------ sensitivity
    def start_sensitivity(self) -> Task | None:
        """Measure each layer's cost both ways in a worker (``measure_sensitivity`` on a
        stratified sample of ``SENSITIVITY_SAMPLES`` items); the strip shows its progress and
        Cancel. Without data: an error line, nothing started."""
        if self.session.loaded is None:
            return None
        try:
            split = self.session.sample_split()
        except XnorlabError as exc:
            self.session.error.emit(f"sensitivity needs labelled data: {exc}")
            return None
        revision, spec = self.session.revision, self.session.dataset_spec or "the data"
        count = len(self.session.layer_names())
        self.bar.running(f"measuring the sensitivity of {count} layers on {spec} (two "
                         "evaluations per layer)…")  # fmt: skip
        self.height_changed.emit()
        self.sensitivity_task = self.runner.start(
            measure_sensitivity, self.session.snapshot(), split,
            max_samples=SENSITIVITY_SAMPLES, key="table-sensitivity",
            on_result=lambda report: self._sensitivity_ready(report, revision, spec),
            on_progress=lambda fraction, *_: self.bar.progressed(fraction),
            on_error=lambda text: self.bar.finished(f"sensitivity failed: {text}", error=True),
            on_cancelled=lambda: self.bar.finished("sensitivity cancelled"),
            on_finished=self._maybe_idle,
        )  # fmt: skip
        self.busy_changed.emit(True)
        return self.sensitivity_task

    def cancel_sensitivity(self) -> None:
        """Stop a running sensitivity measurement (the columns keep what they showed)."""
        task = self.runner.running("table-sensitivity")
        if task is not None:
            task.cancel()

    def hide_sensitivity(self) -> None:
        """Hide the sensitivity columns and their strip (a running measurement is cancelled)."""
        self.cancel_sensitivity()
        for key in SENSITIVITY:
            self.view.setColumnHidden(COL[key], True)
        if not self.bar.isHidden():
            self.bar.hide()
            self.height_changed.emit()

    def sensitivity_shown(self) -> bool:
        return not self.view.isColumnHidden(COL["binarize"])

    def _sensitivity_ready(self, report: SensitivityReport, revision: int, spec: str) -> None:
        names = self.session.class_names
        note = f"{spec}, {report.sample.text(names)}" if report.sample is not None else spec
        stale = revision != self.session.revision
        self.model.set_sensitivity(report, note, stale)
        for key in SENSITIVITY:
            self.view.setColumnHidden(COL[key], False)
        self.fit_columns()
        whole = report.configured
        text = (
            f"Sensitivity: points of top-1 lost, + = worse (bold: exceeds noise) on {note}. "
            f"The whole configuration costs {cost_text(whole)} ({whole.verdict})."
        )
        self.bar.finished(text + (f" {OUTDATED}" if stale else ""))
        self.height_changed.emit()

    def _sensitivity_outdated(self) -> None:
        if self.model.sensitivity and not self.model.sensitivity_stale:
            self.model.mark_sensitivity_stale()
            self.bar.finished(f"{self.bar.label.text()} {OUTDATED}")

    def shutdown(self) -> None:
        """Stop the workers (window close)."""
        self._timer.stop()
        self.runner.cancel_all()
