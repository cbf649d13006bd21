"""The ensemble section of the report and ``xnorlab ensemble --plot``: a table of the first k
members and the plot (PNG, matplotlib's Agg canvas): held-out top-1 against the number of
members, with the packed memory and the measured latency of the first k members as axes, and
the float model as a line with its 95 % interval band.

Left panel: top-1 of the first k members (Wilson intervals) and each member alone, against k;
the top axis gives the packed memory of the first k members. Right panel: the same top-1
against the measured batch-1 latency of the first k members through the engine (its median, with
the relative interval of its ratio to the float model), the float model as a point at its own latency.
"""

from __future__ import annotations

import io
from typing import Any

from matplotlib.figure import Figure

from xnorlab.measure.ensemble import EnsembleEvaluation, EnsemblePoint
from xnorlab.measure.intervals import Accuracy

ENSEMBLE_COLUMNS = ("k", "held-out top-1 (95 %)", "float - ensemble (paired)", "packed",
                    "latency, batch 1", "x float latency")  # fmt: skip
ENSEMBLE_LEGEND = (
    "k: the ensemble of the first k members (mean-softmax vote). Top-1 on held-out items no "
    "member trained or chose on, with its Wilson interval; float - ensemble: the float model's "
    "top-1 minus the ensemble's on the same items, paired 95 % interval and McNemar p. Packed: "
    "binary weights at 1 bit. Latency: the members through the engine (deployed), the float "
    "model in torch, interleaved in one process; x float: median of per-round ratios with its "
    "interval."
)
_DPI = 100


def _kib(size: int) -> str:
    return f"{size / 1024:,.0f} KiB"


def ensemble_table(result: EnsembleEvaluation) -> list[list[str]]:
    """One row per k (``ENSEMBLE_COLUMNS``)."""
    return [
        [str(p.members), p.accuracy.text(), p.versus_float.text(), _kib(p.packed_bytes),
         f"{p.latency.median_s * 1e3:.3f} ms", p.latency_ratio.text(reason=False)]
        for p in result.points
    ]  # fmt: skip


def _budget(point: EnsemblePoint | None) -> str:
    if point is None:
        return "not even one member fits"
    return (f"{point.members} member(s): {point.accuracy.text()}; float - ensemble "
            f"{point.versus_float.text()}")  # fmt: skip


def ensemble_rows(result: EnsembleEvaluation) -> list[tuple[str, str]]:
    """The comparison in key-value rows: the float model and the two equal budgets."""
    float_ms = result.float_latency.median_s * 1e3
    rows = [
        ("float model", f"{result.baseline}: {result.float_accuracy.text()}, "
                        f"{_kib(result.float_packed_bytes)}, {float_ms:.3f} ms"),
        ("members alone", "; ".join(f"{i}: {100 * a.value:.2f} %"
                                    for i, a in enumerate(result.member_accuracies, 1))),
        (f"at equal packed memory ({_kib(result.float_packed_bytes)})",
         _budget(result.within_memory)),
        (f"at equal measured latency ({float_ms:.3f} ms)", _budget(result.within_latency)),
        ("held-out sample", result.sample.text()),
        ("timing", f"engine {result.engine}, {result.threads} torch threads"),
    ]  # fmt: skip
    if result.load:
        rows.append(("latency NOISY", result.load))
    return rows


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
        x = point.latency.median_s * 1e3  # its own median, as in the table
        xs.append(x)
        below.append(max(0.0, x * (1 - ratio.low / ratio.median)))  # the ratio's relative
        above.append(max(0.0, x * (ratio.high / ratio.median - 1)))  # interval, around it
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
