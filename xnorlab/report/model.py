"""The report's data model: frozen dataclasses, data first; ``xnorlab.report.build`` fills them,
``xnorlab.report.render`` renders them.

Counting conventions (as Larq's ``models.summary`` counts):

* memory (``xnorlab.measure.memory``): binary (BWN/XNOR) weights at 1 bit; their alpha (one
  float32 per output channel), biases, float layers, BatchNorm parameters and floating buffers
  at 32 bits;
* MACs: per sample, ``H_out*W_out*C_out*(C_in/groups)*kh*kw`` (conv) or
  ``out_features*in_features`` (linear). A MAC is *binary* only when both operands are binary
  (XNOR layers); BWN MACs are counted as float (float input times +-alpha);
* compression: ``float32 bits / deployed bits``; binarized-MAC ratio: ``binary MACs / MACs``;
* accuracies: ``Accuracy`` (hits of n with the 95 % Wilson interval); differences between two
  configurations: ``PairedDifference`` on the same items (paired interval, McNemar verdict);
* latency: float and configured timed interleaved; the speed-up is a ``RatioEstimate`` (median
  of pairwise ratios, interval, noise flag); a layer's time is its share of the end-to-end
  median, and ``unattributed`` is the part of the median no layer accounts for.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from xnorlab.data.sampling import SampleInfo
from xnorlab.measure.ensemble import EnsembleEvaluation
from xnorlab.measure.front import SearchResult
from xnorlab.measure.intervals import Accuracy, PairedDifference
from xnorlab.measure.timing import RatioEstimate

SCHEMA_VERSION = 2


@dataclass(frozen=True)
class Histogram:
    """Counts of values in ``len(counts)`` equal bins between ``edges[0]`` and ``edges[-1]``."""

    counts: tuple[int, ...]
    edges: tuple[float, ...]


@dataclass(frozen=True)
class LayerReport:
    """Everything the report says about one binarizable layer.

    Error/sign fields are NaN-free: ``None`` means "not measured" (e.g. no calibration data).
    ``sensitivity_mode`` is the mode the layer had in the binarize-alone run (its configured
    mode, or XNOR for a layer configured float). Latencies are the layer's share of the
    end-to-end median in milliseconds, batch 1 (``xnorlab.measure.latency.split_whole``).
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
    input_never_negative: bool | None  # no calibration input entry < 0 (XNOR sees constant +1)
    local_error: float | None  # this layer alone: ||y_mode - y_float|| / ||y_float||, same input
    output_error: float | None  # configured model vs float model at this layer's output
    latency_float_ms: float | None  # torch float
    latency_config_ms: float | None  # configured mode, configured engine
    speedup: float | None  # latency_float_ms / latency_config_ms
    kernel_pack_ms: float | None  # engine split of the configured time (native calls only):
    kernel_popcount_ms: float | None  # sign+pack of the input, xor/popcount, output transform
    kernel_scale_ms: float | None  # (the rest of latency_config_ms is glue: allocation, ...)
    sensitivity_mode: str | None
    binarize_alone: PairedDifference | None  # all float vs only this layer binarized
    restore_alone: PairedDifference | None  # this layer float (rest configured) vs configured
    alphas: tuple[float, ...] = ()
    weight_hist: Histogram | None = None
    input_hist: Histogram | None = None


@dataclass(frozen=True)
class ReportTotals:
    """Whole-model figures; ``None`` when not measured."""

    params: int
    binary_params: int  # weights stored at 1 bit
    other_params: int  # parameters outside binarizable layers (BatchNorm, PReLU, ...)
    float_bits: int
    deployed_bits: int
    compression: float
    macs: int
    binary_macs: int
    binarized_mac_ratio: float
    accuracy_float: Accuracy | None
    accuracy_config: Accuracy | None
    accuracy_drop: PairedDifference | None  # all float vs configured, same items
    latency_float_ms: float | None  # end-to-end medians, interleaved
    latency_config_ms: float | None
    speedup: RatioEstimate | None  # float / config: median of pairwise ratios, noise flag
    latency_float_unattributed_ms: float | None  # of the median, in no binarizable layer
    latency_config_unattributed_ms: float | None
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
    calibration_sample: SampleInfo | None  # how it was drawn and its classes
    validation_sample: SampleInfo | None
    engine: str  # "native" | "torch"
    isa: str
    threads: int
    date: str
    machine: str
    settings: tuple[tuple[str, str], ...] = ()
    unbinarizable_layers: tuple[tuple[str, str], ...] = ()  # Conv2d/Linear that stay float: why
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Report:
    """The report: a header, one ``LayerReport`` per binarizable layer, totals, and (when one
    was run) the search's answer to "what should I binarize?" (``measure.front``)."""

    header: ReportHeader
    layers: tuple[LayerReport, ...]
    totals: ReportTotals
    schema_version: int = SCHEMA_VERSION
    search: SearchResult | None = None
    ensemble: EnsembleEvaluation | None = None  # the model is an ensemble: accuracy vs k


@dataclass(frozen=True)
class ReportData:
    """The inputs of a report: a calibration batch and optional labelled validation tensors,
    with how each was drawn (``None``: not drawn from a labelled data set)."""

    name: str
    calibration: Tensor  # (N, C, H, W) or (N, F)
    val_inputs: Tensor | None = None
    val_labels: Tensor | None = None
    calibration_sample: SampleInfo | None = None
    validation_sample: SampleInfo | None = None


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
