"""Markdown renderer: header, totals and per-layer tables, notes."""

from __future__ import annotations

from xnorlab.report.model import Report
from xnorlab.report.render.ensemble_plot import (
    ENSEMBLE_COLUMNS,
    ENSEMBLE_LEGEND,
    ensemble_rows,
    ensemble_table,
)
from xnorlab.report.render.format import (
    LAYER_COLUMNS,
    SEARCH_COLUMNS,
    SEARCH_LEGEND,
    cell_text,
    header_rows,
    search_rows,
    search_table,
    totals_rows,
)

# The wide layer table is split in three readable tables.
_GROUPS = (
    ("Structure and memory", ("layer", "type", "mode", "weight", "in", "out", "params", "MACs",
                              "binary MACs", "float KiB", "deployed KiB", "compr.")),
    ("Binarization statistics", ("layer", "mode", "alpha mean", "alpha min", "alpha max",
                                 "alpha std", "W approx err", "in near 0", "sign flips",
                                 "in never < 0", "local err", "output err")),
    ("Latency (shares of the end-to-end medians)", ("layer", "mode", "float ms", "config ms",
                                                    "speedup", "pack ms", "popcount ms", "scale ms")),
    ("Accuracy sensitivity (paired on the validation items)", (
        "layer", "mode", "alone mode", "acc. binarized alone", "cost binarized alone",
        "acc. restored alone", "cost restored alone")),
)  # fmt: skip


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell_text(c) for c in row) + " |" for row in rows]
    return lines


def render_markdown(report: Report) -> str:
    """The report as GitHub-flavoured Markdown."""
    lines = [f"# Binarization report: {report.header.model_spec}", ""]
    lines += _table(["", ""], [[k, v] for k, v in header_rows(report)])
    lines += ["", "## Totals", ""]
    lines += _table(["", ""], [[k, v] for k, v in totals_rows(report)])
    columns = dict(LAYER_COLUMNS)
    for title, names in _GROUPS:
        lines += ["", f"## {title}", ""]
        rows = [[columns[name](layer) for name in names] for layer in report.layers]
        lines += _table(list(names), rows)
    if report.search is not None:
        lines += ["", "## What to binarize: searched front", ""]
        lines += _table(["", ""], [[k, v] for k, v in search_rows(report.search)])
        lines += ["", *_table(list(SEARCH_COLUMNS), search_table(report.search))]
        lines += ["", SEARCH_LEGEND]
    if report.ensemble is not None:
        lines += ["", "## Ensemble: accuracy vs number of members", ""]
        lines += _table(["", ""], [[k, v] for k, v in ensemble_rows(report.ensemble)])
        lines += ["", *_table(list(ENSEMBLE_COLUMNS), ensemble_table(report.ensemble))]
        lines += ["", ENSEMBLE_LEGEND]
    if report.header.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in report.header.notes]
    lines += ["", _LEGEND, ""]
    return "\n".join(lines)


_LEGEND = (
    "Memory: binary weights at 1 bit, alpha (one per output channel), biases, BatchNorm and "
    "float layers at 32 bits (as Larq counts). W approx err = ||W - alpha*sign(W)|| / ||W||. "
    "In near 0: inputs with |x| <= 5% of mean|x|. Sign flips: input signs that differ from the "
    "float model's. In never < 0: no calibration input entry was negative (an XNOR layer then "
    "sees a constant +1). Local err: this layer's output vs float on the same input; output "
    "err: configured model vs float model at this layer. Accuracies: top-1 in percent with the "
    "95 % Wilson interval. Binarized alone: only this layer binarized (alone mode), the rest "
    "float; its cost = all-float accuracy minus that. Restored alone: only this layer float, "
    "the rest as configured; its cost = that accuracy minus the configured one. A positive "
    "cost means binarizing the layer makes the model worse; costs are in points with a paired "
    "95 % interval, and 'exceeds noise' when McNemar's exact test on the same items gives "
    "p < 0.05. Latency: float and config timed interleaved; a layer's ms is its share of the "
    "end-to-end median, the rest is in no binarizable layer. Pack / popcount / scale ms: the "
    "native engine's split of the configured time (sign+pack of the input, xor+popcount, "
    "output transform); the rest is glue (allocation, Python, torch ops)."
)
