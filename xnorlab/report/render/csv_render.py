"""CSV renderer: one row per layer, every scalar field of ``LayerReport`` as a column.

Shapes are ``AxBxC`` strings; missing values are empty cells; lists (alphas, histograms) are
left out (they are in the JSON).
"""

from __future__ import annotations

import csv
import dataclasses
import io

from xnorlab.report.model import LayerReport, Report
from xnorlab.report.render.format import shape_text

_SKIP = {"alphas", "weight_hist", "input_hist"}
COLUMNS = tuple(f.name for f in dataclasses.fields(LayerReport) if f.name not in _SKIP)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, tuple):
        return shape_text(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def render_csv(report: Report) -> str:
    """Header line plus one line per layer (RFC 4180 quoting, ``\\n`` line ends)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for layer in report.layers:
        writer.writerow([_cell(getattr(layer, column)) for column in COLUMNS])
    return buffer.getvalue()
