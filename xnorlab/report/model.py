"""The report's data model: frozen dataclasses, data first; ``xnorlab.report.build`` fills them,
``xnorlab.report.render`` renders them.

Counting conventions (as Larq's ``models.summary`` counts):

* memory (``xnorlab.measure.memory``): binary (BWN/XNOR) weights at 1 bit; their alpha (one
  float32 per output channel), biases, float layers, BatchNorm parameters and floating buffers
  at 32 bits;
* MACs: per sample, ``H_out*W_out*C_out*(C_in/groups)*kh*kw`` (conv) or
  ``out_features*in_features`` (linear). A MAC is *binary* only when both operands are binary
  (XNOR layers); BWN MACs are counted as float (float input times +-alpha);
* compression: ``float32 bits / deployed bits``; binarized-MAC ratio: ``binary MACs / MACs``.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Histogram:
    """Counts of values in ``len(counts)`` equal bins between ``edges[0]`` and ``edges[-1]``."""

    counts: tuple[int, ...]
    edges: tuple[float, ...]


@dataclass(frozen=True)
class LayerReport:
    """Everything the report says about one binarizable layer.

    Error/sign fields are NaN-free: ``None`` means "not measured" (e.g. no calibration data).
    ``sensitivity_mode`` is the mode the layer had alone in the sensitivity run (its configured
    mode, or XNOR for a layer configured float). Latencies are medians in milliseconds, batch 1.
    """

    name: str
    kind: str  # "conv2d" | "linear"
    mode: str  # "float" | "bwn" | "xnor"
    weight_shape: tuple[int, ...]
    input_shape: tuple[int, ...]  # one sample, () when not reached by the forward pass
    output_shape: tuple[int, ...]
    params: int  # weight + bias elements
    macs: int  # per sample
    binary_macs: int  # per sample, XNOR layers only
    float_bits: int  # weight+bias at 32 bits
    deployed_bits: int  # as deployed in its mode (1-bit weights + 32-bit alpha and bias)
    compression: float  # float_bits / deployed_bits
    alpha_mean: float
    alpha_min: float
    alpha_max: float
    alpha_std: float
    approx_error: float  # ||W - alpha*sign(W)||_F / ||W||_F
    input_near_zero: float | None  # share of inputs with |x| <= 5% mean|x|
    input_sign_flip: float | None  # share of input signs differing from the float model's
    local_error: float | None  # this layer alone: ||y_mode - y_float|| / ||y_float||, same input
    output_error: float | None  # configured model vs float model at this layer's output
    latency_float_ms: float | None  # torch float
    latency_config_ms: float | None  # configured mode, configured engine
    speedup: float | None  # latency_float_ms / latency_config_ms
    kernel_pack_ms: float | None  # engine split of the configured time (native calls only):
    kernel_popcount_ms: float | None  # sign+pack of the input, xor/popcount, output transform
    kernel_scale_ms: float | None  # (the rest of latency_config_ms is glue: allocation, ...)
    sensitivity_mode: str | None
    sensitivity_accuracy: float | None  # validation top-1 with only this layer binarized
    sensitivity_drop: float | None  # float accuracy - sensitivity_accuracy (points)
    alphas: tuple[float, ...] = ()
    weight_hist: Histogram | None = None
    input_hist: Histogram | None = None


@dataclass(frozen=True)
class ReportTotals:
    """Whole-model figures. Accuracies in percent; ``None`` when not measured."""

    params: int
    binary_params: int  # weights stored at 1 bit
    other_params: int  # parameters outside binarizable layers (BatchNorm, PReLU, ...)
    float_bits: int
    deployed_bits: int
    compression: float
    macs: int
    binary_macs: int
    binarized_mac_ratio: float
    accuracy_float: float | None
    accuracy_config: float | None
    accuracy_drop: float | None
    latency_float_ms: float | None
    latency_config_ms: float | None
    speedup: float | None
    xnor_file_bytes: int | None
    float_state_dict_bytes: int | None
    file_compression: float | None


@dataclass(frozen=True)
class ReportHeader:
    """Where and how the report was made (volatile fields: date, machine, timings)."""

    xnorlab_version: str
    torch_version: str
    model_spec: str
    dataset: str
    input_shape: tuple[int, ...]
    calibration_samples: int
    validation_samples: int
    engine: str  # "native" | "torch"
    isa: str
    threads: int
    date: str
    machine: str
    settings: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Report:
    """The report: a header, one ``LayerReport`` per binarizable layer, and totals."""

    header: ReportHeader
    layers: tuple[LayerReport, ...]
    totals: ReportTotals
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class ReportData:
    """The inputs of a report: a calibration batch and optional labelled validation tensors."""

    name: str
    calibration: Tensor  # (N, C, H, W) or (N, F)
    val_inputs: Tensor | None = None
    val_labels: Tensor | None = None


@dataclass(frozen=True)
class ReportOptions:
    """What to measure. ``engine`` is "native" or "torch" for the configured latency."""

    sensitivity: bool = True
    latency: bool = True
    latency_repeats: int = 10
    file_sizes: bool = True
    engine: str = "native"
    histogram_bins: int = 41
    batch_size: int = 256
    extra_notes: tuple[str, ...] = field(default_factory=tuple)


# ------------------------------------------------------------------------------ helpers


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator`` or None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def settings_pairs(settings: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """Sorted ``(key, str(value))`` pairs (frozen, JSON-friendly)."""
    return tuple(sorted((str(k), str(v)) for k, v in settings.items()))
