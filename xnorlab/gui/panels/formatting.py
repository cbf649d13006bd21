"""Human-readable numbers for the panels (bytes, seconds, ratios, percentages, modes)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

from xnorlab.binary.modes import Mode

_BYTE_UNITS = ("B", "KiB", "MiB", "GiB")


def format_bytes(n_bytes: int) -> str:
    """``1536 -> '1.50 KiB'`` (binary units)."""
    value = float(n_bytes)
    for unit in _BYTE_UNITS:
        if abs(value) < 1024 or unit == _BYTE_UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_seconds(seconds: float) -> str:
    """``0.000123 -> '123 µs'``, ``0.0123 -> '12.3 ms'``, ``1.5 -> '1.50 s'``."""
    if math.isnan(seconds):
        return "n/a"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.2f} s"


def format_percent(fraction: float | None) -> str:
    """``0.9876 -> '98.76 %'``; ``None`` -> an em dash."""
    return "—" if fraction is None or math.isnan(fraction) else f"{100 * fraction:.2f} %"


def format_ratio(ratio: float) -> str:
    """``3.14159 -> '3.14x'``."""
    return "n/a" if math.isnan(ratio) else f"{ratio:.2f}x"


def mode_counts(modes: Iterable[Mode]) -> str:
    """``3 XNOR · 1 BWN · 1 float``: how many layers are in each mode (modes without layers
    left out)."""
    counts = Counter(modes)
    return " · ".join(f"{counts[m]} {m.value.upper() if m is not Mode.FLOAT else 'float'}"
                      for m in (Mode.XNOR, Mode.BWN, Mode.FLOAT) if counts[m])  # fmt: skip
