"""The ensemble plot (PNG, matplotlib's Agg canvas): held-out top-1 against the number of
members, with the packed memory and the measured latency of the first k members as axes, and
the float model as a line with its 95 % interval band.

Left panel: top-1 of the first k members (Wilson intervals) and each member alone, against k;
the top axis gives the packed memory of the first k members. Right panel: the same top-1
against the measured batch-1 latency of the first k members through the engine (median, with
the interval of its ratio to the float model), the float model as a point at its own latency.
"""

from __future__ import annotations

import io
from typing import Any

from matplotlib.figure import Figure

from xnorlab.measure.ensemble import EnsembleEvaluation
from xnorlab.measure.intervals import Accuracy

_DPI = 100
_FLOAT, _ENSEMBLE, _MEMBER = "#8c8c8c", "#1f77b4", "#ff7f0e"


def _percent(accuracy: Accuracy) -> tuple[float, float, float]:
    """``(value, below, above)`` in percent: the point and its Wilson error bar lengths."""
    low, high = accuracy.interval
    value = 100 * accuracy.value
    return value, value - 100 * low, 100 * high - value


def _float_band(axis: Any, accuracy: Accuracy, label: str) -> None:
    value, below, above = _percent(accuracy)
    axis.axhline(value, color=_FLOAT, linewidth=1.2, label=label)
    axis.axhspan(value - below, value + above, color=_FLOAT, alpha=0.18, linewidth=0)


def _members_panel(axis: Any, result: EnsembleEvaluation, baseline: str) -> None:
    ks = [p.members for p in result.points]
    values = [_percent(p.accuracy) for p in result.points]
    axis.errorbar(ks, [v for v, _, _ in values],
                  yerr=[[b for _, b, _ in values], [a for _, _, a in values]],
                  color=_ENSEMBLE, marker="o", capsize=3, label="ensemble of the first k")  # fmt: skip
    alone = [100 * a.value for a in result.member_accuracies]
    axis.plot(ks, alone, linestyle="none", marker="x", color=_MEMBER, label="member k alone")
    _float_band(axis, result.float_accuracy, f"float {baseline} (95 % band)")
    axis.set_xlabel("members k")
    axis.set_ylabel("held-out top-1 (%)")
    axis.set_xticks(ks)
    top = axis.twiny()
    top.set_xlim(axis.get_xlim())
    top.set_xticks(ks)
    top.set_xticklabels([f"{p.packed_bytes / 1024:.0f}" for p in result.points], fontsize=7)
    float_kib = result.float_packed_bytes / 1024
    top.set_xlabel(f"packed memory of the first k (KiB); float model {float_kib:,.0f} KiB",
                   fontsize=8)  # fmt: skip
    axis.legend(fontsize=7, loc="lower right")


def _latency_panel(axis: Any, result: EnsembleEvaluation, baseline: str) -> None:
    float_ms = result.float_latency.median_s * 1e3
    xs, below, above, ys = [], [], [], []
    for point in result.points:
        ratio = point.latency_ratio
        x = ratio.median * float_ms
        xs.append(x)
        below.append(max(0.0, x - ratio.low * float_ms))
        above.append(max(0.0, ratio.high * float_ms - x))
        ys.append(_percent(point.accuracy))
    axis.errorbar(xs, [v for v, _, _ in ys], xerr=[below, above],
                  yerr=[[b for _, b, _ in ys], [a for _, _, a in ys]],
                  color=_ENSEMBLE, marker="o", capsize=3, label="ensemble of the first k")  # fmt: skip
    for point, x, (y, _, _) in zip(result.points, xs, ys, strict=True):
        axis.annotate(str(point.members), (x, y), textcoords="offset points", xytext=(4, 4),
                      fontsize=7)  # fmt: skip
    _float_band(axis, result.float_accuracy, f"float {baseline} (95 % band)")
    axis.axvline(float_ms, color=_FLOAT, linestyle="--", linewidth=1.0,
                 label=f"float latency {float_ms:.3g} ms")  # fmt: skip
    axis.set_xlabel("measured latency, batch 1 (ms; engine for the members)")
    axis.set_ylabel("held-out top-1 (%)")
    axis.legend(fontsize=7, loc="lower right")


def ensemble_figure(result: EnsembleEvaluation, baseline: str) -> bytes:
    """The two panels (module docstring) as PNG bytes."""
    figure = Figure(figsize=(11.0, 4.2), dpi=_DPI)
    left, right = figure.subplots(1, 2)
    figure.subplots_adjust(left=0.07, right=0.98, top=0.80, bottom=0.13, wspace=0.22)
    _members_panel(left, result, baseline)
    _latency_panel(right, result, baseline)
    n = result.sample.count
    noisy = " · latency NOISY (busy machine)" if result.load else ""
    figure.suptitle(
        f"Binary ensemble vs float {baseline}: {n:,} held-out items, {result.engine}{noisy}",
        fontsize=10,
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()
