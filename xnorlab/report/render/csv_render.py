"""CSV renderer: one row per layer, every scalar field of ``LayerReport`` as a column.

Shapes are ``AxBxC`` strings; missing values are empty cells; lists (alphas, histograms) are
left out (they are in the JSON). A paired comparison (``binarize_alone``, ``restore_alone``)
becomes ``PAIRED_PARTS`` columns named ``<field>_<part>``. With a search, each layer's mode in
the chosen point (``search_chosen_mode``, empty when nothing was chosen) and in every front
point (``search_front_<i>_mode``, in the front's order) follow; the points' figures are in
the JSON, HTML and Markdown.
"""

from __future__ import annotations

import csv
import dataclasses
import io

from xnorlab.measure.front import SearchResult
from xnorlab.measure.intervals import PairedDifference
from xnorlab.report.model import LayerReport, Report
from xnorlab.report.render.format import shape_text

_SKIP = {"alphas", "weight_hist", "input_hist"}
_PAIRED = ("binarize_alone", "restore_alone")
#: candidate top-1, cost and its 95 % interval (fractions), McNemar p, verdict, items
PAIRED_PARTS = ("accuracy", "cost", "cost_low", "cost_high", "p_value", "verdict", "n")
_FIELDS = tuple(f.name for f in dataclasses.fields(LayerReport) if f.name not in _SKIP)
COLUMNS = tuple(
    column
    for name in _FIELDS
    for column in ([f"{name}_{part}" for part in PAIRED_PARTS] if name in _PAIRED else [name])
)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return shape_text(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _paired_cells(paired: PairedDifference | None) -> list[str]:
    if paired is None:
        return [""] * len(PAIRED_PARTS)
    low, high = paired.interval
    values = (paired.candidate.value, paired.cost, low, high, paired.p_value, paired.verdict,
              paired.n)  # fmt: skip
    return [_cell(value) for value in values]


def _row(layer: LayerReport) -> list[str]:
    cells: list[str] = []
    for name in _FIELDS:
        value = getattr(layer, name)
        cells += _paired_cells(value) if name in _PAIRED else [_cell(value)]
    return cells


def _search_columns(search: SearchResult | None) -> list[str]:
    if search is None:
        return []
    fronts = [f"search_front_{i}_mode" for i in range(1, len(search.front) + 1)]
    return ["search_chosen_mode", *fronts]


def _search_cells(search: SearchResult | None, name: str) -> list[str]:
    if search is None:
        return []
    chosen = "" if search.chosen is None else str(search.chosen.modes.get(name, ""))
    return [chosen] + [str(point.modes.get(name, "")) for point in search.front]


def render_csv(report: Report) -> str:
    """Header line plus one line per layer (RFC 4180 quoting, ``\\n`` line ends)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*COLUMNS, *_search_columns(report.search)])
    for layer in report.layers:
        writer.writerow(_row(layer) + _search_cells(report.search, layer.name))
    return buffer.getvalue()
