"""Number formatting and the table columns shared by the text renderers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xnorlab.data.sampling import SampleInfo
from xnorlab.measure.front import FrontPoint, SearchResult, modes_letters
from xnorlab.measure.intervals import Accuracy, PairedDifference
from xnorlab.measure.timing import NOISY_RELATIVE_WIDTH
from xnorlab.report.model import LayerReport, Report


def shape_text(shape: tuple[int, ...]) -> str:
    """``(64, 3, 3, 3)`` -> ``"64x3x3x3"``; empty -> ``"-"``."""
    return "x".join(str(d) for d in shape) if shape else "-"


def num(value: float | int | None, digits: int = 3) -> str:
    """Compact number: integers with thousands separators, floats to ``digits`` significant."""
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}"


def pct(value: float | None, digits: int = 1) -> str:
    """A fraction in [0, 1] as percent (``None`` -> ``-``)."""
    return "-" if value is None else f"{100.0 * value:.{digits}f}%"


def grouped_reasons(pairs: tuple[tuple[str, str], ...]) -> str:
    """``(name, reason)`` pairs as ``a, b: reason; c: other reason`` (``none`` when empty)."""
    groups: dict[str, list[str]] = {}
    for name, reason in pairs:
        groups.setdefault(reason, []).append(name)
    return "; ".join(f"{', '.join(names)}: {reason}" for reason, names in groups.items()) or "none"


def times(value: float | None) -> str:
    """A ratio such as a speedup or a compression (``12.3x``)."""
    return "-" if value is None else f"{value:.2f}x"


def yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def accuracy_short(accuracy: Accuracy | None) -> str:
    """``99.30 [98.6, 99.7]`` (percent, 95 % Wilson interval)."""
    if accuracy is None or not accuracy.n:
        return "-"
    low, high = accuracy.interval
    return f"{100 * accuracy.value:.2f} [{100 * low:.1f}, {100 * high:.1f}]"


def cost_short(paired: PairedDifference | None) -> str:
    """``+36.60 [+33.4, +39.9] exceeds noise`` (points, paired 95 % interval, verdict)."""
    if paired is None or not paired.n:
        return "-"
    low, high = paired.interval
    return f"{100 * paired.cost:+.2f} [{100 * low:+.1f}, {100 * high:+.1f}] {paired.verdict}"


def sample_text(info: SampleInfo | None, count: int) -> str:
    """How a sample was drawn, or just its size when it was not drawn from labelled data."""
    if info is None:
        return f"{count:,} items" if count else "none"
    return info.text()


def kib(bits: int | None) -> str:
    """Bits as KiB (1 KiB = 8192 bits)."""
    return "-" if bits is None else f"{bits / 8192:,.1f}"


def file_size(n_bytes: int | None) -> str:
    """Bytes in the unit that reads best."""
    if n_bytes is None:
        return "-"
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:,.2f} {unit}"
    return f"{n_bytes} B"


Column = tuple[str, Callable[[LayerReport], str]]

LAYER_COLUMNS: tuple[Column, ...] = (
    ("layer", lambda r: r.name),
    ("type", lambda r: r.kind),
    ("mode", lambda r: r.mode),
    ("weight", lambda r: shape_text(r.weight_shape)),
    ("in", lambda r: shape_text(r.input_shape)),
    ("out", lambda r: shape_text(r.output_shape)),
    ("params", lambda r: num(r.params)),
    ("MACs", lambda r: num(r.macs)),
    ("binary MACs", lambda r: num(r.binary_macs)),
    ("float KiB", lambda r: kib(r.float_bits)),
    ("deployed KiB", lambda r: kib(r.deployed_bits)),
    ("compr.", lambda r: times(r.compression)),
    ("alpha mean", lambda r: num(r.alpha_mean)),
    ("alpha min", lambda r: num(r.alpha_min)),
    ("alpha max", lambda r: num(r.alpha_max)),
    ("alpha std", lambda r: num(r.alpha_std)),
    ("W approx err", lambda r: num(r.approx_error)),
    ("in near 0", lambda r: pct(r.input_near_zero)),
    ("sign flips", lambda r: pct(r.input_sign_flip)),
    ("in never < 0", lambda r: yes_no(r.input_never_negative)),
    ("local err", lambda r: num(r.local_error)),
    ("output err", lambda r: num(r.output_error)),
    ("float ms", lambda r: num(r.latency_float_ms)),
    ("config ms", lambda r: num(r.latency_config_ms)),
    ("speedup", lambda r: times(r.speedup)),
    ("pack ms", lambda r: num(r.kernel_pack_ms)),
    ("popcount ms", lambda r: num(r.kernel_popcount_ms)),
    ("scale ms", lambda r: num(r.kernel_scale_ms)),
    ("alone mode", lambda r: r.sensitivity_mode or "-"),
    ("acc. binarized alone", lambda r: accuracy_short(r.binarize_alone.candidate if r.binarize_alone else None)),
    ("cost binarized alone", lambda r: cost_short(r.binarize_alone)),
    ("acc. restored alone", lambda r: accuracy_short(r.restore_alone.baseline if r.restore_alone else None)),
    ("cost restored alone", lambda r: cost_short(r.restore_alone)),
)  # fmt: skip


def _accuracy_rows(report: Report) -> list[tuple[str, str]]:
    t = report.totals
    if t.accuracy_drop is None:
        return [("top-1 accuracy", "not measured (no labelled validation data)")]
    return [
        ("top-1 accuracy, all float", t.accuracy_drop.baseline.text()),
        ("top-1 accuracy, configured", t.accuracy_drop.candidate.text()),
        ("cost of the configuration (float - configured, paired)", t.accuracy_drop.text()),
    ]


def _latency_rows(report: Report) -> list[tuple[str, str]]:
    t = report.totals
    if t.speedup is None:
        return [("latency", "not measured")]
    noise = t.speedup.noise_reason or (
        f"steady: 95 % interval within {100 * NOISY_RELATIVE_WIDTH:.0f} % of the median, "
        "machine not busy"
    )
    return [
        ("latency float -> config (ms, batch 1, interleaved medians)",
         f"{num(t.latency_float_ms)} -> {num(t.latency_config_ms)}"),
        ("end-to-end speedup (median of pairwise ratios)", t.speedup.text(reason=False)),
        ("latency noise", ("NOISY: " if t.speedup.noisy else "") + noise),
        ("in no binarizable layer (ms, float / config)",
         f"{num(t.latency_float_unattributed_ms)} / {num(t.latency_config_unattributed_ms)}"),
    ]  # fmt: skip


def totals_rows(report: Report) -> list[tuple[str, str]]:
    """``(label, value)`` rows of the model totals."""
    t = report.totals
    return [
        ("parameters", f"{num(t.params)} ({num(t.binary_params)} binary, {num(t.other_params)} outside conv/linear)"),
        ("weight memory float32", f"{kib(t.float_bits)} KiB"),
        ("weight memory deployed", f"{kib(t.deployed_bits)} KiB"),
        ("compression", times(t.compression)),
        ("MACs per sample", f"{num(t.macs)} ({num(t.binary_macs)} binary)"),
        ("binarized-MAC ratio", pct(t.binarized_mac_ratio)),
        *_accuracy_rows(report),
        *_latency_rows(report),
        (".xnor file vs float state_dict file", f"{file_size(t.xnor_file_bytes)} vs {file_size(t.float_state_dict_bytes)} ({times(t.file_compression)} smaller)"),
    ]  # fmt: skip


def header_rows(report: Report) -> list[tuple[str, str]]:
    """``(label, value)`` rows of the report header."""
    h = report.header
    settings = ", ".join(f"{k}={v}" for k, v in h.settings) or "model's own"
    return [
        ("xnorlab", f"{h.xnorlab_version} (torch {h.torch_version})"),
        ("model", h.model_spec),
        ("input", shape_text(h.input_shape)),
        ("dataset", h.dataset),
        ("validation sample (accuracy)", sample_text(h.validation_sample, h.validation_samples)),
        ("calibration sample (statistics)", sample_text(h.calibration_sample, h.calibration_samples)),
        ("engine", f"{h.engine}, ISA {h.isa}, {h.threads} threads"),
        ("layer settings", settings),
        ("Conv2d/Linear that stay float", grouped_reasons(h.unbinarizable_layers)),
        ("date", h.date),
        ("machine", h.machine),
    ]  # fmt: skip


def cell_text(value: Any) -> str:
    """Escape a cell for Markdown tables (pipes)."""
    return str(value).replace("|", "\\|")


# ------------------------------------------------------------------------------ search

SEARCH_COLUMNS = ("point", "modes", "binary layers", "top-1 [95 %]", "latency ms [95 %]",
                  "speedup", "memory KiB")  # fmt: skip


def _point_cells(label: str, point: FrontPoint, float_ms: float) -> list[str]:
    low, high = point.latency_interval_ms
    return [
        label,
        modes_letters(point.modes),
        f"{point.binary_layers} of {len(point.modes)}",
        accuracy_short(point.accuracy),
        f"{point.latency_ms:.3g} [{low:.3g}, {high:.3g}]",
        times(float_ms / point.latency_ms if point.latency_ms > 0 else None),
        f"{point.memory_bytes / 1024:,.1f}",
    ]


def search_point_label(search: SearchResult, point: FrontPoint) -> str:
    """``float``, ``chosen``, or the point's number on the front (``3``)."""
    if point is search.chosen:
        return "chosen"
    if point.binary_layers == 0:
        return "float"
    return str(search.front.index(point) + 1) if point in search.front else "-"


def search_table(search: SearchResult) -> list[list[str]]:
    """One row per front point (``SEARCH_COLUMNS``), the float point first if it is not on
    the front; the chosen point is labelled ``chosen``."""
    floats = search.float_point
    points = list(search.front)
    if not any(p.binary_layers == 0 for p in points):
        points.insert(0, floats)
    return [_point_cells(search_point_label(search, p), p, floats.latency_ms) for p in points]


def search_rows(search: SearchResult) -> list[tuple[str, str]]:
    """``(label, value)`` rows: what was searched, the chosen point and its confirmation."""
    metric = "top-1" if str(search.metric) == "top1" else "top-1 agreement with float"
    chosen = search.chosen
    rows = [
        ("budget", f"{search.budget_points:g} points of {metric} on the score split"),
        ("objective", f"{search.objective} (lower is better)"),
        ("score split (chooses)", search.score_sample.text()),
        ("confirm split (reports)", search.confirm_sample.text()),
        ("layers, in model order", ", ".join(search.float_point.modes)),
        ("configurations measured", f"{search.evaluated} ({len(search.front)} on the front)"),
        ("chosen", "nothing binarized beats float within the budget" if chosen is None
         else f"{modes_letters(chosen.modes)} ({chosen.binary_layers} binary layers)"),
    ]  # fmt: skip
    if chosen is not None:
        tuned = (
            f", after {search.finetune_epochs} fine-tune epochs" if search.finetune_epochs else ""
        )
        rows.append((
            f"confirm split: chosen vs float{tuned}",
            f"{accuracy_short(search.confirm_accuracy)} vs {accuracy_short(search.confirm_float)}",
        ))  # fmt: skip
    within, lost = search.confirm_within_budget, search.confirm_loss_points
    if within is not None and lost is not None:
        verdict = "yes" if within else "no, more than the budget"
        rows.append((
            "within the budget on the confirm split",
            f"{verdict}: the chosen point loses {lost:.1f} points against float",
        ))  # fmt: skip
    return rows


SEARCH_LEGEND = (
    "Search: each layer float (F), BWN (B) or XNOR (X), one letter per layer in model order. "
    "Every configuration was measured for real: top-1 on the score split with its 95 % Wilson "
    "interval; latency through the engine at batch 1, timed interleaved against every layer "
    "float and given as float median / speed-up, with the speed-up's interval; memory with "
    "binary weights packed at 1 bit. The front keeps the configurations no other beats on all "
    "three. The chosen point is the best on the objective within the budget on the score split; "
    "its accuracy is reported on the confirm split, which chose nothing."
)
