"""PNG plots of a report with matplotlib's Agg canvas (no pyplot, no global backend change).

Every function returns PNG bytes.
"""

from __future__ import annotations

import io
from typing import Any

from matplotlib.figure import Figure

from xnorlab.measure.front import SearchResult
from xnorlab.measure.intervals import PairedDifference
from xnorlab.report.model import Histogram, LayerReport, Report

_DPI = 80
_FLOAT, _BINARY = "#8c8c8c", "#1f77b4"


def _figure(
    width: float, height: float, panels: int = 1, bottom: float = 0.12, left: float = 0.06
) -> tuple[Any, list[Any]]:
    figure = Figure(figsize=(width, height), dpi=_DPI)  # no layout engine: it doubles the cost
    axes = figure.subplots(1, panels, squeeze=False)[0]
    figure.subplots_adjust(left=left, right=0.98, top=0.88, bottom=bottom, wspace=0.25)
    return figure, list(axes)


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _bar_histogram(axis: Any, hist: Histogram | None, title: str, color: str) -> None:
    axis.set_title(title, fontsize=9)
    if hist is None or not hist.counts:
        axis.text(0.5, 0.5, "not measured", ha="center", va="center", transform=axis.transAxes)
        return
    axis.stairs(hist.counts, hist.edges, fill=True, color=color)
    axis.axvline(0.0, color="black", linewidth=0.8)
    axis.tick_params(labelsize=7)


def layer_figure(layer: LayerReport) -> bytes:
    """Weight histogram, input histogram and alpha per output channel of one layer."""
    figure, (w_axis, x_axis, a_axis) = _figure(10.5, 2.3, panels=3)
    color = _FLOAT if layer.mode == "float" else _BINARY
    _bar_histogram(w_axis, layer.weight_hist, f"{layer.name}: weights", color)
    _bar_histogram(x_axis, layer.input_hist, f"{layer.name}: input activations", color)
    a_axis.set_title(f"{layer.name}: alpha per output channel", fontsize=9)
    edges = [i - 0.5 for i in range(len(layer.alphas) + 1)]
    a_axis.stairs(layer.alphas, edges, fill=True, color=color)  # one artist, even for 2048 bars
    a_axis.axhline(layer.alpha_mean, color="black", linewidth=0.8)
    a_axis.tick_params(labelsize=7)
    return _png(figure)


def _names(report: Report) -> list[str]:
    return [layer.name for layer in report.layers]


def _colors(report: Report) -> list[str]:
    return [_FLOAT if layer.mode == "float" else _BINARY for layer in report.layers]


def _layer_axis(axis: Any, report: Report, title: str, ylabel: str) -> None:
    axis.set_title(title, fontsize=10)
    axis.set_ylabel(ylabel, fontsize=8)
    axis.set_xticks(range(len(report.layers)), _names(report), rotation=60, ha="right", fontsize=7)
    axis.tick_params(axis="y", labelsize=7)


def _bottom(report: Report) -> float:
    """Room for the rotated layer names under a 3.2-inch chart."""
    longest = max((len(layer.name) for layer in report.layers), default=4)
    return min(0.5, 0.1 + 0.0125 * longest)


def _left(report: Report) -> float:
    return min(0.12, 0.9 / _width(report))


def _width(report: Report) -> float:
    return max(6.0, 0.35 * len(report.layers) + 2.0)


def alpha_figure(report: Report) -> bytes:
    """Mean alpha per layer with min-max whiskers (blue: binarized, grey: float)."""
    figure, (axis,) = _figure(_width(report), 3.2, bottom=_bottom(report), left=_left(report))
    means = [layer.alpha_mean for layer in report.layers]
    low = [layer.alpha_mean - layer.alpha_min for layer in report.layers]
    high = [layer.alpha_max - layer.alpha_mean for layer in report.layers]
    axis.bar(range(len(means)), means, yerr=[low, high], color=_colors(report), capsize=2)
    _layer_axis(axis, report, "alpha = mean|W| per filter: mean, min-max", "alpha")
    return _png(figure)


def _costs(pairs: list[PairedDifference | None]) -> tuple[list[float], list[list[float]]]:
    """Costs in points and their interval as error-bar lengths (0 where not measured)."""
    costs, below, above = [], [], []
    for paired in pairs:
        cost, low, high = (0.0, 0.0, 0.0)
        if paired is not None and paired.n:
            cost, (low, high) = paired.cost, paired.interval
        costs.append(100 * cost)
        below.append(100 * (cost - low))
        above.append(100 * (high - cost))
    return costs, [below, above]


def sensitivity_figure(report: Report) -> bytes:
    """Cost of each layer binarized alone and restored alone, with paired 95 % intervals."""
    figure, (axis,) = _figure(_width(report), 3.2, bottom=_bottom(report), left=_left(report))
    positions = range(len(report.layers))
    alone, alone_err = _costs([layer.binarize_alone for layer in report.layers])
    restore, restore_err = _costs([layer.restore_alone for layer in report.layers])
    axis.bar([p - 0.2 for p in positions], alone, width=0.4, yerr=alone_err, capsize=2,
             color="#ff7f0e", label="binarized alone (rest float)")  # fmt: skip
    axis.bar([p + 0.2 for p in positions], restore, width=0.4, yerr=restore_err, capsize=2,
             color=_BINARY, label="restored alone (rest configured)")  # fmt: skip
    axis.axhline(0.0, color="black", linewidth=0.8)
    axis.legend(fontsize=7)
    _layer_axis(axis, report, "accuracy cost of binarizing each layer (> 0: worse)", "points")
    return _png(figure)


_SPLIT = (
    ("kernel_pack_ms", "pack", "#6baed6"),
    ("kernel_popcount_ms", "popcount", "#2171b5"),
    ("kernel_scale_ms", "transform", "#08306b"),
)


def _config_parts(layer: LayerReport) -> list[float]:
    """Configured time split into the engine's parts and the rest (glue); sums to the wall."""
    total = layer.latency_config_ms or 0.0
    parts = [getattr(layer, key) or 0.0 for key, _, _ in _SPLIT]
    return [*parts, max(0.0, total - sum(parts))]


def latency_figure(report: Report) -> bytes:
    """Per-layer latency: torch float vs the configured engine, split into the engine's parts
    (sign+pack, xor+popcount, output transform) and glue (everything else)."""
    figure, (axis,) = _figure(_width(report), 3.2, bottom=_bottom(report), left=_left(report))
    positions = [p + 0.2 for p in range(len(report.layers))]
    floats = [layer.latency_float_ms or 0.0 for layer in report.layers]
    axis.bar([p - 0.4 for p in positions], floats, width=0.4, color=_FLOAT, label="float")
    parts = [_config_parts(layer) for layer in report.layers]
    base = [0.0] * len(parts)
    colors = [*((label, color) for _, label, color in _SPLIT), ("glue", "#9ecae1")]
    for index, (label, color) in enumerate(colors):
        heights = [row[index] for row in parts]
        axis.bar(positions, heights, width=0.4, bottom=base, color=color, label=f"config: {label}")
        base = [b + h for b, h in zip(base, heights, strict=True)]
    wide = len(report.layers) > 12
    axis.set_ylim(0, (1.3 if wide else 1.5) * max([*floats, *base, 1e-6]))  # legend headroom
    axis.legend(fontsize=7, ncols=5 if wide else 3, loc="upper center", frameon=False)
    _layer_axis(axis, report, "latency per layer (batch 1, median)", "ms")
    return _png(figure)


def error_figure(report: Report) -> bytes:
    """Local and propagated relative output error per layer."""
    figure, (axis,) = _figure(_width(report), 3.2, bottom=_bottom(report), left=_left(report))
    positions = range(len(report.layers))
    local = [layer.local_error or 0.0 for layer in report.layers]
    output = [layer.output_error or 0.0 for layer in report.layers]
    axis.bar([p - 0.2 for p in positions], local, width=0.4, color="#ff7f0e", label="local")
    axis.bar([p + 0.2 for p in positions], output, width=0.4, color="#d62728", label="model")
    axis.legend(fontsize=8)
    _layer_axis(axis, report, "relative output error vs float", "||y - y_float|| / ||y_float||")
    return _png(figure)


def search_figure(search: SearchResult) -> bytes:
    """The search's front: top-1 (score split) against latency, each point with its 95 %
    intervals, its packed memory as marker area and colour; the float point and the chosen
    point marked, the budget as a dashed line."""
    figure, (axis,) = _figure(7.5, 4.2, bottom=0.13, left=0.1)
    points = list(search.front)
    memory = [p.memory_bytes / 1024 for p in points]
    largest = max([*memory, search.float_point.memory_bytes / 1024, 1e-9])
    sizes = [30 + 250 * m / largest for m in memory]
    for point in points:
        low, high = point.accuracy.interval
        y = 100 * point.accuracy.value
        axis.errorbar(point.latency_ms, y, fmt="none", ecolor="#bbbbbb", linewidth=0.8,
                      xerr=[[point.latency_ms - point.latency_interval_ms[0]],
                            [point.latency_interval_ms[1] - point.latency_ms]],
                      yerr=[[y - 100 * low], [100 * high - y]])  # fmt: skip
    scatter = axis.scatter([p.latency_ms for p in points], [100 * p.accuracy.value for p in points],
                           s=sizes, c=memory, cmap="viridis", vmin=0, vmax=largest,
                           edgecolors="black", linewidths=0.5, zorder=3)  # fmt: skip
    figure.colorbar(scatter, ax=axis, label="packed memory (KiB)", pad=0.01)
    floats = search.float_point
    axis.scatter([floats.latency_ms], [100 * floats.accuracy.value], marker="*", s=260,
                 color=_FLOAT, edgecolors="black", zorder=4, label="float")  # fmt: skip
    if search.chosen is not None:
        chosen = search.chosen
        axis.scatter([chosen.latency_ms], [100 * chosen.accuracy.value], s=420, facecolors="none",
                     edgecolors="#d62728", linewidths=2, zorder=5, label="chosen")  # fmt: skip
    bound = 100 * floats.accuracy.value - search.budget_points
    axis.axhline(bound, color="#d62728", linestyle="--", linewidth=0.8,
                 label=f"budget ({search.budget_points:g} pts)")  # fmt: skip
    metric = "top-1" if str(search.metric) == "top1" else "top-1 agreement with float"
    axis.set_xlabel("latency, batch 1 (ms)", fontsize=9)
    axis.set_ylabel(f"{metric}, score split (%)", fontsize=9)
    axis.set_title(
        f"search front ({len(points)} of {search.evaluated} configurations)", fontsize=10
    )
    axis.legend(fontsize=8, loc="lower right")
    axis.tick_params(labelsize=8)
    return _png(figure)
