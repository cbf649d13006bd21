"""Data behind the app's layer table and per-layer views (Qt-free; the GUI only renders it).

Everything here runs in a worker on a *snapshot* of the live model
(``xnorlab.lab.session.snapshot_model``): the functions switch the snapshot's layer configs
temporarily (restored in ``finally``) and add hooks, which must never happen on the model the
user is editing.

* ``compute_layer_view``: one layer: weight histogram and per-filter ``alpha = mean|W_c|``
  (eq. 4), the layer's input histogram on a sample batch (captured with hooks, forward stopped
  right after the layer), the K map of the first sample (``K = mean_c|I| (*) box``, section
  3.2), and the layer's output in float vs its binarized mode on the same input.
* ``compute_table_stats``: every layer: alpha summary, BWN approximation error and, with data,
  sign-flip rate and errors vs float (``xnorlab.binary.stats.compare_layers``) and whether the
  layer's input was ever negative (``xnorlab.binary.stats.nonnegative_input_layers``).

The batches come from ``LabSession.activation_inputs`` (a stratified sample); "sample 0" is
its first item, of whichever class the seeded shuffle put first.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from xnorlab.binary import stats
from xnorlab.binary.binarize import input_scale_kmap, weight_scale_alpha
from xnorlab.binary.layers import BinarizableLayer, BinConv2d, LayerConfig
from xnorlab.binary.modes import Mode
from xnorlab.binary.surgery import float_mode, iter_binarizable
from xnorlab.common.errors import XnorlabError
from xnorlab.common.tasks import CancelFn, ProgressFn, check_cancel, no_progress

HIST_BINS = 80
SCATTER_POINTS = 3000
VIEW_MACS_BUDGET = 2_000_000_000  # MACs one view update may spend on the sample forward pass
MAX_VIEW_BATCH = 20  # two items per class of a 10-class set (the session draws whole shares)


@dataclass(frozen=True)
class Histogram:
    """Counts of ``len(edges) - 1`` bins."""

    counts: np.ndarray
    edges: np.ndarray


@dataclass(frozen=True)
class OutputComparison:
    """The layer's float output vs its output in ``mode``, on the same (configured-run) input.

    ``relative_error = ||y_bin - y_float|| / ||y_float||``; ``correlation`` = Pearson r;
    ``propagated_error``: the configured run's output vs the all-float run's output;
    ``float_values`` / ``binary_values``: a deterministic subsample for a scatter plot.
    """

    mode: Mode
    preview: bool  # True when the layer is float and ``mode`` is a what-if (XNOR)
    relative_error: float
    correlation: float
    propagated_error: float
    float_values: np.ndarray
    binary_values: np.ndarray


@dataclass(frozen=True)
class LayerView:
    """Everything the per-layer views draw for one layer."""

    name: str
    kind: str  # "conv2d" | "linear"
    config: LayerConfig
    weight_hist: Histogram
    binary_hist: Histogram  # the BWN weights alpha_c * sign(W) on the same bins
    alpha: np.ndarray  # per output filter, mean |W_c|
    weight: stats.WeightStats
    sample_count: int  # 0 when no data was given
    input_hist: Histogram | None
    sign: stats.SignStats | None
    near_zero_threshold: float  # |x| below this counts as near zero (0.05 * mean|x|)
    kmap: np.ndarray | None  # (H_out, W_out) K map of sample 0 (conv layers)
    beta: float | None  # mean |x| of sample 0 (linear layers)
    input_image: np.ndarray | None  # sample 0 of the model input, (H, W) or (H, W, 3) in [0, 1]
    output: OutputComparison | None
    elapsed_s: float

    @property
    def mode(self) -> Mode:
        return self.config.mode


@dataclass(frozen=True)
class LayerRowStats:
    """The layer table's computed columns for one layer (NaN where no data was given)."""

    alpha_mean: float
    alpha_min: float
    alpha_max: float
    approx_error: float
    flip_rate: float
    local_error: float
    propagated_error: float
    input_never_negative: bool | None = None  # on the sample; None: no data was given


def view_batch_size(total_macs: int, budget: int = VIEW_MACS_BUDGET) -> int:
    """Samples per view update so that one forward pass stays within ``budget`` MACs."""
    if total_macs <= 0:
        return MAX_VIEW_BATCH
    return int(max(1, min(MAX_VIEW_BATCH, budget // total_macs)))


class _StopForward(Exception):
    """Raised by a hook to end a forward pass once the wanted layer has run."""


def capture_layer(model: nn.Module, x: Tensor, name: str) -> stats.LayerIO:
    """Input and output of layer ``name`` on ``model(x)``; the pass stops after that layer."""
    module = dict(model.named_modules()).get(name)
    if module is None:
        raise XnorlabError(f"no layer named {name!r}")
    captured: list[stats.LayerIO] = []

    def hook(_m: nn.Module, inputs: tuple[Tensor, ...], out: Tensor) -> None:
        captured.append(stats.LayerIO(inputs[0].detach(), out.detach()))
        raise _StopForward

    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            model(x)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not captured:
        raise XnorlabError(f"layer {name!r} is not used by the model's forward pass")
    return captured[0]


def _layer_output(module: BinarizableLayer, x: Tensor, mode: Mode) -> Tensor:
    saved = module.config
    try:
        module.config = saved.updated(mode=mode)
        with torch.no_grad():
            out: Tensor = module(x)
        return out
    finally:
        module.config = saved


def _subsample(values: Tensor, count: int = SCATTER_POINTS) -> np.ndarray:
    flat = values.detach().float().flatten()
    step = max(1, flat.numel() // count)
    return flat[::step][:count].cpu().numpy()


def _compare_output(
    module: BinarizableLayer, io: stats.LayerIO, reference: stats.LayerIO
) -> OutputComparison:
    preview = module.mode is Mode.FLOAT
    mode = Mode.XNOR if preview else module.mode
    y_float = _layer_output(module, io.input, Mode.FLOAT)
    y_bin = io.output if not preview else _layer_output(module, io.input, mode)
    return OutputComparison(
        mode=mode,
        preview=preview,
        relative_error=stats.relative_error(y_bin, y_float),
        correlation=stats.correlation(y_bin, y_float),
        propagated_error=stats.relative_error(io.output, reference.output),
        float_values=_subsample(y_float),
        binary_values=_subsample(y_bin),
    )


def _float_reference(
    model: nn.Module, inputs: Tensor, name: str, cache: dict[str, stats.LayerIO] | None
) -> stats.LayerIO:
    if cache is not None and name in cache:
        return cache[name]
    with float_mode(model):
        reference = capture_layer(model, inputs, name)
    if cache is not None:
        cache[name] = reference
    return reference


def _kmap(module: BinarizableLayer, x: Tensor) -> tuple[np.ndarray | None, float | None]:
    if isinstance(module, BinConv2d):
        kmap = input_scale_kmap(
            x[:1].float(), module.kernel_size, module.stride, module.padding, module.dilation,
            module.groups,
        )  # fmt: skip
        return kmap[0].mean(dim=0).cpu().numpy(), None
    return None, float(x[:1].abs().mean())


def input_image(x: Tensor) -> np.ndarray:
    """Sample 0 of a model input as a displayable image in [0, 1] (min-max per image)."""
    sample = x[0].detach().float()
    if sample.dim() != 3:
        side = max(1, int(math.sqrt(sample.numel())))
        sample = sample.flatten()[: side * side].reshape(1, side, side)
    image = sample.permute(1, 2, 0) if sample.shape[0] == 3 else sample.mean(dim=0)
    lo, hi = float(image.min()), float(image.max())
    scaled = (image - lo) / (hi - lo) if hi > lo else torch.zeros_like(image)
    return scaled.cpu().numpy()


def _wrapped(model: nn.Module, name: str) -> BinarizableLayer:
    module = dict(model.named_modules()).get(name)
    if not isinstance(module, BinarizableLayer):
        raise XnorlabError(f"no switchable layer named {name!r}")
    return module


def _binary_histogram(weight: Tensor, alpha: Tensor, edges: np.ndarray) -> Histogram:
    """Histogram of ``alpha_c * sign(W)``: filter ``c`` puts its +1 count at ``+alpha_c`` and
    its -1 count at ``-alpha_c``."""
    flat = weight.flatten(1)
    positive = (flat >= 0).sum(dim=1).double().cpu().numpy()
    negative = flat.shape[1] - positive
    values = np.concatenate([alpha.cpu().numpy(), -alpha.cpu().numpy()])
    counts, _ = np.histogram(values, bins=edges, weights=np.concatenate([positive, negative]))
    return Histogram(counts.astype(np.int64), edges)


WeightParts = tuple[Histogram, Histogram, np.ndarray, stats.WeightStats]
_weight_cache: dict[int, tuple[weakref.ref[Tensor], int, WeightParts]] = {}
_weight_cache_lock = threading.Lock()


def _weight_parts(module: BinarizableLayer) -> WeightParts:
    """Weight histograms, alpha and stats, cached until the weight changes (its ``_version``)."""
    param = module.weight
    with _weight_cache_lock:
        hit = _weight_cache.get(id(param))
    if hit is not None and hit[0]() is param and hit[1] == param._version:
        return hit[2]
    parts = _compute_weight_parts(param)
    with _weight_cache_lock:
        for key in [k for k, v in _weight_cache.items() if v[0]() is None]:
            del _weight_cache[key]  # weights of models that are gone
        _weight_cache[id(param)] = (weakref.ref(param), param._version, parts)
    return parts


def _compute_weight_parts(param: Tensor) -> WeightParts:
    weight = param.detach().float()
    lo, hi = float(weight.min()), float(weight.max())
    bound = max(abs(lo), abs(hi)) or 1.0
    counts, edges = stats.histogram(weight, bins=HIST_BINS, value_range=(-bound, bound))
    alpha = weight_scale_alpha(weight)
    binary = _binary_histogram(weight, alpha, edges)
    return Histogram(counts, edges), binary, alpha.cpu().numpy(), stats.weight_stats(weight)


def _runs(
    model: nn.Module,
    inputs: Tensor,
    name: str,
    cache: dict[str, stats.LayerIO] | None,
    report: ProgressFn,
    should_cancel: CancelFn | None,
) -> tuple[stats.LayerIO, stats.LayerIO]:
    """The layer's input/output in the configured run and in the all-float run (eval mode)."""
    was_training = model.training
    model.eval()
    try:
        report(0.2, f"{name}: configured run")
        io = capture_layer(model, inputs, name)
        check_cancel(should_cancel, "layer view")
        report(0.6, f"{name}: float run")
        reference = _float_reference(model, inputs, name, cache)
        check_cancel(should_cancel, "layer view")
        return io, reference
    finally:
        model.train(was_training)


def compute_layer_view(
    model: nn.Module,
    name: str,
    inputs: Tensor | None = None,
    *,
    float_cache: dict[str, stats.LayerIO] | None = None,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
) -> LayerView:
    """Compute what the views show for layer ``name`` (pass a snapshot as ``model``).

    Without ``inputs`` only the weight parts are filled. With a batch: one forward pass in the
    current configuration and one in float, each stopped right after the layer.
    ``float_cache``: the all-float run does not depend on the modes, so the caller may keep its
    result per layer in this dict (and drop the dict when the weights or the inputs change).
    """
    started = time.perf_counter()
    module = _wrapped(model, name)
    weight_hist, binary_hist, alpha, weight = _weight_parts(module)
    kind = "conv2d" if isinstance(module, BinConv2d) else "linear"
    if inputs is None:
        return LayerView(
            name, kind, module.config, weight_hist, binary_hist, alpha, weight, 0, None, None,
            0.0, None, None, None, None, time.perf_counter() - started,
        )  # fmt: skip
    report = progress or no_progress
    io, reference = _runs(model, inputs, name, float_cache, report, should_cancel)
    kmap, beta = _kmap(module, io.input)
    counts, edges = stats.histogram(io.input, bins=HIST_BINS)
    return LayerView(
        name=name, kind=kind, config=module.config, weight_hist=weight_hist,
        binary_hist=binary_hist, alpha=alpha, weight=weight, sample_count=int(inputs.shape[0]),
        input_hist=Histogram(counts, edges), sign=stats.sign_stats(io.input, reference.input),
        near_zero_threshold=stats.NEAR_ZERO_RELATIVE * float(io.input.abs().mean()),
        kmap=kmap, beta=beta, input_image=input_image(inputs),
        output=_compare_output(module, io, reference), elapsed_s=time.perf_counter() - started,
    )  # fmt: skip


def _row(
    weight: stats.WeightStats,
    comparison: stats.LayerComparison | None,
    never_negative: bool | None,
) -> LayerRowStats:
    nan = math.nan
    return LayerRowStats(
        alpha_mean=weight.alpha_mean,
        alpha_min=weight.alpha_min,
        alpha_max=weight.alpha_max,
        approx_error=weight.approx_error,
        flip_rate=comparison.sign.flip_rate if comparison else nan,
        local_error=comparison.local_error if comparison else nan,
        propagated_error=comparison.propagated_error if comparison else nan,
        input_never_negative=never_negative,
    )


def compute_table_stats(
    model: nn.Module,
    inputs: Tensor | None = None,
    *,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
) -> dict[str, LayerRowStats]:
    """Per-layer alpha summary and (with ``inputs``) flip rate, errors vs float and whether
    the layer's input (in the configured run) was ever negative.

    Pass a snapshot as ``model``: ``compare_layers`` switches its modes temporarily.
    """
    report = progress or no_progress
    layers = list(iter_binarizable(model))
    weights = {}
    for index, (name, module) in enumerate(layers):
        weights[name] = stats.weight_stats(module.weight)
        check_cancel(should_cancel, "layer statistics")
        report(0.3 * (index + 1) / max(1, len(layers)), "weight statistics")
    compared: dict[str, stats.LayerComparison] = {}
    never_negative: set[str] | None = None
    if inputs is not None:
        report(0.35, "comparing layers with float")
        compared = stats.compare_layers(model, inputs)
        check_cancel(should_cancel, "layer statistics")
        report(0.9, "looking for inputs that are never negative")
        never_negative = set(_nonnegative_inputs(model, inputs))
    report(1.0, "layer statistics")
    return {
        name: _row(
            weights[name], compared.get(name),
            None if never_negative is None else name in never_negative,
        )
        for name, _ in layers
    }  # fmt: skip


def _nonnegative_inputs(model: nn.Module, inputs: Tensor) -> list[str]:
    """``stats.nonnegative_input_layers`` in eval mode (BatchNorm uses its running stats)."""
    was_training = model.training
    model.eval()
    try:
        return stats.nonnegative_input_layers(model, inputs)
    finally:
        model.train(was_training)
