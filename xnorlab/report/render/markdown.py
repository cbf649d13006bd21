"""Markdown renderer: header, totals and per-layer tables, notes."""

from __future__ import annotations

from xnorlab.report.model import Report
from xnorlab.report.render.format import (
    LAYER_COLUMNS,
    cell_text,
    header_rows,
    totals_rows,
)

# The wide layer table is split in three readable tables.
_GROUPS = (
    ("Structure and memory", ("layer", "type", "mode", "weight", "in", "out", "params", "MACs",
                              "binary MACs", "float KiB", "deployed KiB", "compr.")),
    ("Binarization statistics", ("layer", "mode", "alpha mean", "alpha min", "alpha max",
                                 "alpha std", "W approx err", "in near 0", "sign flips",
                                 "local err", "output err")),
    ("Latency and accuracy sensitivity", ("layer", "mode", "float ms", "config ms", "speedup",
                                          "pack ms", "popcount ms", "scale ms", "sens. mode", "acc. alone", "drop")),
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
    if report.header.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in report.header.notes]
    lines += ["", _LEGEND, ""]
    return "\n".join(lines)


_LEGEND = (
    "Memory: binary weights at 1 bit, alpha (one per output channel), biases, BatchNorm and "
    "float layers at 32 bits (as Larq counts). W approx err = ||W - alpha*sign(W)|| / ||W||. "
    "In near 0: inputs with |x| <= 5% of mean|x|. Sign flips: input signs that differ from the "
    "float model's. Local err: this layer's output vs float on the same input; output err: "
    "configured model vs float model at this layer. Acc. alone: validation top-1 with only "
    "this layer binarized (sens. mode); drop: float accuracy minus that. Pack / popcount / "
    "scale ms: the native engine's split of the configured time (sign+pack of the input, "
    "xor+popcount, output transform); the rest is glue (allocation, Python, torch ops)."
)
