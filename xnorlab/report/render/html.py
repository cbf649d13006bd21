"""Self-contained HTML renderer: tables plus inline PNG plots (``data:`` URIs), no network.

Plots need matplotlib; without it the report says so and keeps the tables.
"""

from __future__ import annotations

import base64
from html import escape

from xnorlab.measure.ensemble import EnsembleEvaluation
from xnorlab.measure.front import SearchResult
from xnorlab.report.model import Report
from xnorlab.report.render import plots
from xnorlab.report.render.ensemble_plot import (
    ENSEMBLE_COLUMNS,
    ENSEMBLE_LEGEND,
    ensemble_figure,
    ensemble_rows,
    ensemble_table,
)
from xnorlab.report.render.format import (
    LAYER_COLUMNS,
    SEARCH_COLUMNS,
    SEARCH_LEGEND,
    header_rows,
    search_rows,
    search_table,
    totals_rows,
)
from xnorlab.report.render.markdown import _GROUPS, _LEGEND

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
tr.float td { color: #666; } tr.binary td:first-child { font-weight: bold; }
.kv td { text-align: left; } img { max-width: 100%; display: block; margin: 0.4em 0; }
.note { color: #8a4b00; } .legend { font-size: 0.85em; color: #444; max-width: 60em; }
"""


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def _kv_table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return f'<table class="kv">{body}</table>'


def _layer_table(report: Report, names: tuple[str, ...]) -> str:
    columns = dict(LAYER_COLUMNS)
    head = "".join(f"<th>{escape(name)}</th>" for name in names)
    rows = []
    for layer in report.layers:
        css = "float" if layer.mode == "float" else "binary"
        cells = "".join(f"<td>{escape(columns[name](layer))}</td>" for name in names)
        rows.append(f'<tr class="{css}">{cells}</tr>')
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _summary_plots(report: Report) -> list[str]:
    parts = [_img(plots.alpha_figure(report), "alpha per layer")]
    parts.append(_img(plots.error_figure(report), "relative output error per layer"))
    if any(layer.binarize_alone is not None for layer in report.layers):
        parts.append(_img(plots.sensitivity_figure(report), "accuracy sensitivity per layer"))
    if any(layer.latency_config_ms is not None for layer in report.layers):
        parts.append(_img(plots.latency_figure(report), "latency per layer"))
    return parts


def _plot_sections(report: Report) -> list[str]:
    parts = ["<h2>Charts</h2>", *_summary_plots(report), "<h2>Per-layer distributions</h2>"]
    parts += [_img(plots.layer_figure(layer), f"{layer.name} distributions") for layer in
              report.layers]  # fmt: skip
    return parts


def _search_section(search: SearchResult) -> list[str]:
    head = "".join(f"<th>{escape(name)}</th>" for name in SEARCH_COLUMNS)
    rows = []
    for cells in search_table(search):
        css = "binary" if cells[0] == "chosen" else ("float" if cells[0] == "float" else "")
        body = "".join(f"<td>{escape(cell)}</td>" for cell in cells)
        rows.append(f'<tr class="{css}">{body}</tr>')
    return [
        "<h2>What to binarize: searched front</h2>",
        _kv_table(search_rows(search)),
        f"<table><tr>{head}</tr>{''.join(rows)}</table>",
        _img(plots.search_figure(search), "search front: accuracy against latency"),
        f'<p class="legend">{escape(SEARCH_LEGEND)}</p>',
    ]


def _ensemble_section(result: EnsembleEvaluation) -> list[str]:
    head = "".join(f"<th>{escape(name)}</th>" for name in ENSEMBLE_COLUMNS)
    rows = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in cells) + "</tr>"
        for cells in ensemble_table(result)
    )
    figure = ensemble_figure(result, result.baseline)
    return [
        "<h2>Ensemble: accuracy vs number of members</h2>",
        _kv_table(ensemble_rows(result)),
        f"<table><tr>{head}</tr>{rows}</table>",
        _img(figure, "accuracy against members, packed memory and latency"),
        f'<p class="legend">{escape(ENSEMBLE_LEGEND)}</p>',
    ]


def render_html(report: Report) -> str:
    """One HTML document with everything inline (opens offline in any browser)."""
    title = f"Binarization report: {report.header.model_spec}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        _kv_table(header_rows(report)),
        "<h2>Totals</h2>",
        _kv_table(totals_rows(report)),
    ]
    for heading, names in _GROUPS:
        parts += [f"<h2>{escape(heading)}</h2>", _layer_table(report, names)]
    if report.search is not None:
        parts += _search_section(report.search)
    if report.ensemble is not None:
        parts += _ensemble_section(report.ensemble)
    if report.header.notes:
        notes = "".join(f"<li>{escape(note)}</li>" for note in report.header.notes)
        parts.append(f'<h2>Notes</h2><ul class="note">{notes}</ul>')
    parts.append(f'<p class="legend">{escape(_LEGEND)}</p>')
    parts += _plot_sections(report)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
