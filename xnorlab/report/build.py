"""The per-layer binarization report: ``build_report`` measures, the renderers render.

``build_report`` measures a model under a mode map and returns a ``Report`` (the frozen
dataclasses of ``xnorlab.report.model``, re-exported here); ``xnorlab.report.render`` turns
it into HTML, JSON, CSV or Markdown (``write_report``). Nothing here imports Qt; long work takes
``progress(fraction, message)`` and ``should_cancel()`` callables. Counting conventions: see
``xnorlab.report.model`` and ``docs/report-schema.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from xnorlab._version import __version__
from xnorlab.binary import stats
from xnorlab.binary.binarize import weight_scale_alpha
from xnorlab.binary.modes import Backend, Mode
from xnorlab.binary.surgery import (
    binarize_model,
    copy_model,
    current_modes,
    float_mode,
    iter_binarizable,
    layer_macs,
    unbinarizable_layers,
    wrapped_layers,
)
from xnorlab.common.errors import XnorlabError
from xnorlab.common.tasks import CancelFn, Cancelled, ProgressFn
from xnorlab.measure.accuracy import tensor_correct
from xnorlab.measure.ensemble import EnsembleEvaluation
from xnorlab.measure.front import SearchResult
from xnorlab.measure.intervals import PairedDifference
from xnorlab.measure.latency import MIN_REPEATS, LatencyComparison, LatencyPlan, float_vs_current
from xnorlab.measure.layers import layer_mode, shapes_per_layer
from xnorlab.measure.machine import (
    engine_context,
    engine_info,
    engine_model,
    machine_description,
)
from xnorlab.measure.memory import (
    FLOAT_BITS,
    layer_bits,
    other_parameter_elements,
    state_dict_file_bytes,
)
from xnorlab.measure.sensitivity import LayerSensitivity, layer_sensitivity, sensitivity_passes
from xnorlab.models.loaded import LoadedModel
from xnorlab.models.packed_layers import has_packed_layers
from xnorlab.models.xnor_file import encode_xnor
from xnorlab.report.model import (
    SCHEMA_VERSION,
    Histogram,
    LayerReport,
    Report,
    ReportData,
    ReportHeader,
    ReportOptions,
    ReportTotals,
    ratio,
    settings_pairs,
    utc_now,
)

__all__ = [
    "SCHEMA_VERSION",
    "Histogram",
    "LayerReport",
    "Report",
    "ReportData",
    "ReportHeader",
    "ReportOptions",
    "ReportTotals",
    "build_report",
]

#: Time for both sides' end-to-end pairs; more repeats than fit are cut, down to
#: ``MIN_REPEATS``, so a large model is timed in bounded time.
LATENCY_BUDGET_S = 8.0
#: Each side's timed runs continue to this total (up to ``LatencyPlan.max_pairs`` pairs): a
#: small model's ratio interval then rests on hundreds of pairs, not ten.
LATENCY_MIN_TIME_S = 1.0

Tick = Callable[[], None]


# ----------------------------------------------------------------------------- building


class _Steps:
    """Progress over a known number of steps; raises ``Cancelled`` when asked to stop."""

    def __init__(self, total: int, progress: ProgressFn | None, cancel: CancelFn | None) -> None:
        self.total, self.done, self.message = max(1, total), 0, "starting"
        self.progress, self.cancel = progress, cancel

    def stage(self, message: str) -> None:
        self.message = message
        self.tick(advance=False)

    def finish(self) -> None:
        self.done, self.message = self.total, "done"
        self.tick(advance=False)

    def tick(self, advance: bool = True) -> None:
        if self.cancel is not None and self.cancel():
            raise Cancelled("report cancelled")
        self.done += int(advance)
        if self.progress is not None:
            self.progress(min(1.0, self.done / self.total), self.message)

    @contextmanager
    def share(self, count: int) -> Iterator[Tick]:
        """A tick for work of unknown length that was given ``count`` steps: each call
        advances one step while some are left, then only checks for cancellation; the
        steps left over are advanced when the work is done."""
        left = [count]

        def tick() -> None:
            self.tick(advance=left[0] > 0)
            left[0] = max(0, left[0] - 1)

        yield tick
        for _ in range(left[0]):
            self.tick()


def _backend(options: ReportOptions) -> Backend:
    """The engine the configured model runs in (``options.engine``)."""
    try:
        return Backend.parse(options.engine)
    except ValueError:
        raise XnorlabError(f"engine must be 'native' or 'torch', got {options.engine!r}") from None


def _validate_options(options: ReportOptions) -> None:
    _backend(options)
    counts = {
        "latency_repeats": options.latency_repeats,
        "histogram_bins": options.histogram_bins,
        "batch_size": options.batch_size,
    }
    for name, value in counts.items():
        if value < 1:
            raise XnorlabError(f"{name} must be >= 1, got {value}")


def _validate_data(data: ReportData, input_shape: tuple[int, ...]) -> None:
    """Shapes, dtypes and finiteness of the report inputs; raises ``XnorlabError``."""
    calib = data.calibration
    if calib.dim() != len(input_shape) + 1 or tuple(calib.shape[1:]) != tuple(input_shape):
        raise XnorlabError(
            f"calibration batch has shape {tuple(calib.shape)}, expected (N, "
            f"{', '.join(map(str, input_shape))})"
        )
    if len(calib) == 0 or not calib.is_floating_point() or not bool(torch.isfinite(calib).all()):
        raise XnorlabError("calibration batch must be a non-empty, finite float tensor")
    if (data.val_inputs is None) != (data.val_labels is None):
        raise XnorlabError("validation inputs and labels must be given together")
    if data.val_inputs is not None and data.val_labels is not None:
        if len(data.val_inputs) != len(data.val_labels) or len(data.val_labels) == 0:
            raise XnorlabError("validation inputs and labels differ in length or are empty")
        if tuple(data.val_inputs.shape[1:]) != tuple(input_shape):
            raise XnorlabError(f"validation inputs do not have the model's shape {input_shape}")
        if data.val_labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise XnorlabError(f"validation labels must be integers, got {data.val_labels.dtype}")


def _histogram(values: Tensor, bins: int) -> Histogram:
    counts, edges = stats.histogram(values, bins=bins)
    return Histogram(tuple(int(c) for c in counts), tuple(float(e) for e in edges))


def _count_layer(
    module: nn.Conv2d | nn.Linear, macs: int, shapes: tuple[tuple[int, ...], ...], bins: int
) -> dict[str, Any]:
    """Counting and weight-statistics fields of one layer (everything not data-dependent)."""
    mode = layer_mode(module)
    shape = tuple(module.weight.shape)
    bias = 0 if module.bias is None else module.bias.numel()
    float_bits, deployed_bits = layer_bits(shape, bias, mode)
    weights = stats.weight_stats(module.weight)
    alphas = weight_scale_alpha(module.weight.detach().float())
    return {
        "kind": "conv2d" if isinstance(module, nn.Conv2d) else "linear",
        "mode": str(mode),
        "weight_shape": shape,
        "input_shape": shapes[0] if shapes else (),
        "output_shape": shapes[1] if shapes else (),
        "params": math.prod(shape) + bias,
        "macs": macs,
        "binary_macs": macs if mode is Mode.XNOR else 0,
        "float_bits": float_bits,
        "deployed_bits": deployed_bits,
        "compression": float_bits / deployed_bits,
        "alpha_mean": weights.alpha_mean,
        "alpha_min": weights.alpha_min,
        "alpha_max": weights.alpha_max,
        "alpha_std": weights.alpha_std,
        "approx_error": weights.approx_error,
        "alphas": tuple(float(a) for a in alphas),
        "weight_hist": _histogram(module.weight, bins),
    }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _error_fields(model: nn.Module, calibration: Tensor, bins: int) -> dict[str, dict[str, Any]]:
    """Sign statistics, local and propagated errors and input histograms per layer."""
    compared = stats.compare_layers(model, calibration)
    captured = stats.capture_activations(model, calibration)
    fields: dict[str, dict[str, Any]] = {}
    for name, comparison in compared.items():
        io = captured.get(name)
        fields[name] = {
            "input_near_zero": _finite(comparison.sign.near_zero_fraction),
            "input_sign_flip": _finite(comparison.sign.flip_rate),
            "local_error": _finite(comparison.local_error),
            "output_error": _finite(comparison.propagated_error),
            "input_hist": None if io is None else _histogram(io.input, bins),
        }
    return fields


def _latency_fields(
    model: nn.Module, sample: Tensor, options: ReportOptions, steps: _Steps
) -> tuple[dict[str, dict[str, Any]], LatencyComparison]:
    """Per-layer shares of the end-to-end medians (ms), torch float vs the configured engine,
    timed interleaved (``float_vs_current``).

    At least ``latency_repeats`` pairs (fewer, down to ``MIN_REPEATS``, when they would exceed
    ``LATENCY_BUDGET_S``), continued to ``LATENCY_MIN_TIME_S`` per side; as many profiled runs
    per side as ``latency_repeats`` for the per-layer split.
    """
    repeats = max(options.latency_repeats, MIN_REPEATS)
    plan = LatencyPlan(warmup=1, repeats=repeats, profile_runs=repeats,
                       budget_s=LATENCY_BUDGET_S / 2, min_time_s=LATENCY_MIN_TIME_S)  # fmt: skip
    with steps.share(2 * (2 * options.latency_repeats + 1)) as tick:
        comparison = float_vs_current(model, sample, plan, _backend(options), tick)
    fields = {}
    for name, timing in comparison.current_side.layers.items():
        float_timing = comparison.float_side.layers.get(name)
        float_ms = None if float_timing is None else float_timing.wall_s * 1e3
        config_ms = timing.wall_s * 1e3
        native = timing.native_calls > 0
        fields[name] = {
            "latency_float_ms": float_ms,
            "latency_config_ms": config_ms,
            "speedup": ratio(float_ms, config_ms),
            "kernel_pack_ms": timing.pack_s * 1e3 if native else None,
            "kernel_popcount_ms": timing.popcount_s * 1e3 if native else None,
            "kernel_scale_ms": timing.scale_s * 1e3 if native else None,
        }
    return fields, comparison


def _latency_totals(comparison: LatencyComparison) -> dict[str, Any]:
    floats, configs = comparison.float_side, comparison.current_side
    return {
        "latency_float_ms": floats.end_to_end.median_s * 1e3,
        "latency_config_ms": configs.end_to_end.median_s * 1e3,
        "speedup": comparison.speedup,
        "latency_float_unattributed_ms": floats.unattributed_s * 1e3,
        "latency_config_unattributed_ms": configs.unattributed_s * 1e3,
    }


def _sensitivity_fields(layer: LayerSensitivity) -> dict[str, Any]:
    return {
        "sensitivity_mode": str(layer.alone_mode),
        "binarize_alone": layer.binarize_alone,
        "restore_alone": layer.restore_alone,
    }


def _accuracy_fields(
    model: nn.Module, data: ReportData, options: ReportOptions, steps: _Steps
) -> tuple[PairedDifference | None, dict[str, dict[str, Any]]]:
    """All float vs configured on the validation items, and (``options.sensitivity``) every
    layer's cost binarized alone and restored alone, all paired on the same items. Without
    sensitivity the configured side in the native engine is the deployed model
    (``engine_model``); the sensitivity runs switch the layers' modes, so they use the layers."""
    if data.val_inputs is None or data.val_labels is None:
        return None, {}
    x, y, batch = data.val_inputs, data.val_labels.long(), options.batch_size
    with engine_context(model, _backend(options)):
        if options.sensitivity:
            result = layer_sensitivity(model, x, y, batch, steps.tick, stage=steps.stage)
            return result.configured, {
                layer.name: _sensitivity_fields(layer) for layer in result.layers
            }
        with float_mode(model):
            floats = tensor_correct(model, x, y, batch, steps.tick)
    configured = tensor_correct(engine_model(model, _backend(options)), x, y, batch, steps.tick)
    return PairedDifference.from_correct(floats.tolist(), configured.tolist()), {}


def _file_sizes(loaded: LoadedModel, model: nn.Module) -> tuple[int | None, int, str | None]:
    """Bytes of the ``.xnor`` export and of the float ``state_dict`` file."""
    float_bytes = state_dict_file_bytes(model)
    try:
        return len(encode_xnor(model, loaded, require_architecture=False)), float_bytes, None
    except XnorlabError as exc:
        return None, float_bytes, f".xnor size not measured: {exc}"


def _detached_copy(model: nn.Module) -> nn.Module:
    """Deep copy without native-engine caches: the caller's model is never touched."""
    return copy_model(model, share_tensors=False)


def _step_count(model: nn.Module, data: ReportData, options: ReportOptions) -> int:
    steps = 2 + (4 * options.latency_repeats + 2 if options.latency else 0)
    if data.val_inputs is not None:
        batches = math.ceil(len(data.val_inputs) / options.batch_size)
        steps += batches * (sensitivity_passes(model) if options.sensitivity else 2)
    return steps


def _totals(
    model: nn.Module, layers: tuple[LayerReport, ...], extra: dict[str, Any]
) -> ReportTotals:
    """Model totals from the layer rows plus every parameter outside them (at 32 bits)."""
    other = other_parameter_elements(model, [m for _, m in iter_binarizable(model)])
    float_bits = sum(row.float_bits for row in layers) + FLOAT_BITS * other
    deployed_bits = sum(row.deployed_bits for row in layers) + FLOAT_BITS * other
    macs = sum(row.macs for row in layers)
    binary_macs = sum(row.binary_macs for row in layers)
    paired: PairedDifference | None = extra.get("accuracy")
    return ReportTotals(
        params=sum(row.params for row in layers) + other,
        binary_params=sum(math.prod(r.weight_shape) for r in layers if r.mode != "float"),
        other_params=other,
        float_bits=float_bits,
        deployed_bits=deployed_bits,
        compression=float_bits / deployed_bits,
        macs=macs,
        binary_macs=binary_macs,
        binarized_mac_ratio=binary_macs / macs if macs else 0.0,
        accuracy_float=None if paired is None else paired.baseline,
        accuracy_config=None if paired is None else paired.candidate,
        accuracy_drop=paired,
        latency_float_ms=extra.get("latency_float_ms"),
        latency_config_ms=extra.get("latency_config_ms"),
        speedup=extra.get("speedup"),
        latency_float_unattributed_ms=extra.get("latency_float_unattributed_ms"),
        latency_config_unattributed_ms=extra.get("latency_config_unattributed_ms"),
        xnor_file_bytes=extra.get("xnor_file_bytes"),
        float_state_dict_bytes=extra.get("float_state_dict_bytes"),
        file_compression=ratio(extra.get("float_state_dict_bytes"), extra.get("xnor_file_bytes")),
    )


def _layer_rows(
    model: nn.Module, input_shape: tuple[int, ...], data: ReportData, bins: int
) -> dict[str, dict[str, Any]]:
    """Counting, weight statistics, shapes and calibration errors of every layer."""
    macs = layer_macs(model, input_shape)
    shapes = shapes_per_layer(model, data.calibration)
    rows = {
        name: {"name": name, **_count_layer(module, macs.get(name, 0), shapes.get(name, ()), bins)}
        for name, module in iter_binarizable(model)
    }
    for name, fields in _error_fields(model, data.calibration, bins).items():
        rows[name].update(fields)
    return rows


def _empty_measurements() -> dict[str, Any]:
    keys = (
        "input_near_zero", "input_sign_flip", "input_never_negative", "local_error",
        "output_error", "latency_float_ms", "latency_config_ms", "speedup", "kernel_pack_ms",
        "kernel_popcount_ms", "kernel_scale_ms", "sensitivity_mode", "binarize_alone",
        "restore_alone",
    )  # fmt: skip
    return dict.fromkeys(keys)


def _measure(
    model: nn.Module, loaded: LoadedModel, data: ReportData, options: ReportOptions, steps: _Steps
) -> tuple[tuple[LayerReport, ...], dict[str, Any], list[str]]:
    """Run every measurement on ``model`` (already configured); rows, totals extras, notes."""
    steps.stage("counting and calibration statistics")
    with engine_context(model, _backend(options)):  # same values as torch, much faster
        counted = _layer_rows(model, loaded.input_shape, data, options.histogram_bins)
        never_negative = set(stats.nonnegative_input_layers(model, data.calibration))
    rows = {name: {**_empty_measurements(), **row} for name, row in counted.items()}
    for name, row in rows.items():
        row["input_never_negative"] = name in never_negative
    steps.tick()
    extra: dict[str, Any] = {}
    notes: list[str] = _never_negative_notes(rows)
    if options.latency:
        steps.stage("timing layers (batch 1)")
        per_layer, comparison = _latency_fields(model, data.calibration[:1], options, steps)
        extra.update(_latency_totals(comparison))
        notes += _noise_notes(comparison)
        for name, fields in per_layer.items():
            rows[name].update(fields)
    steps.stage("validation accuracy")
    extra["accuracy"], sensitivity = _accuracy_fields(model, data, options, steps)
    for name, fields in sensitivity.items():
        rows[name].update(fields)
    if options.file_sizes:
        steps.stage("file sizes")
        extra["xnor_file_bytes"], extra["float_state_dict_bytes"], note = _file_sizes(loaded, model)
        notes += [note] if note else []
    steps.tick()
    return tuple(LayerReport(**row) for row in rows.values()), extra, notes


def _header(
    loaded: LoadedModel,
    data: ReportData,
    options: ReportOptions,
    settings: Mapping[str, Any],
    notes: list[str],
) -> ReportHeader:
    engine = engine_info()
    return ReportHeader(
        xnorlab_version=__version__,
        torch_version=torch.__version__,
        model_spec=loaded.spec,
        dataset=data.name,
        input_shape=tuple(loaded.input_shape),
        calibration_samples=len(data.calibration),
        validation_samples=0 if data.val_inputs is None else len(data.val_inputs),
        calibration_sample=data.calibration_sample,
        validation_sample=data.validation_sample,
        engine=str(_backend(options)),
        isa=engine.isa,
        threads=engine.threads,
        date=utc_now(),
        machine=machine_description(),
        settings=settings_pairs(settings),
        unbinarizable_layers=tuple(unbinarizable_layers(loaded.model).items()),
        notes=tuple(dict.fromkeys([*options.extra_notes, *notes])),
    )


def build_report(
    loaded: LoadedModel,
    modes: str | Mapping[str, Mode | str] | None,
    data: ReportData,
    *,
    options: ReportOptions | None = None,
    settings: Mapping[str, Any] | None = None,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
    search: SearchResult | None = None,
    ensemble: EnsembleEvaluation | None = None,
) -> Report:
    """Measure ``loaded.model`` under ``modes`` and return the report (data only).

    Works on a private copy: the caller's model (modes, configs, caches) is never changed, so
    a GUI may call this from a worker thread. ``modes``: a preset, a JSON path or a mapping
    (``None`` keeps the model's current modes); ``settings`` (scaling, pad_mode, ...) apply to
    every layer as in ``binarize_model``. Raises ``XnorlabError`` on bad data or modes and
    ``Cancelled`` when ``should_cancel()`` becomes true. ``search``: a search of the same
    model (``xnorlab.search``, run by the caller), shown as its front, plot and choice.
    ``ensemble``: when the model is an ensemble, its evaluation against a float model
    (``measure.ensemble``, run by the caller), shown as accuracy vs members with memory and
    latency.
    """
    options = options or ReportOptions()
    _validate_options(options)
    _validate_data(data, loaded.input_shape)
    if has_packed_layers(loaded.model):
        raise XnorlabError(
            f"{loaded.spec} is a packed .xnor model: its binary layers have no float weights "
            "to compare with; build the report from the float model and the same modes"
        )
    model = _detached_copy(loaded.model).eval()
    mode_map = current_modes(model) if modes is None else modes
    binarize_model(model, mode_map, warn_first_last=False, **dict(settings or {}))
    for layer in wrapped_layers(model).values():
        layer.configure(backend="torch")  # the engine is chosen by options.engine alone
    steps = _Steps(_step_count(model, data, options), progress, should_cancel)
    layers, extra, notes = _measure(model, loaded, data, options, steps)
    steps.finish()
    notes = [*_first_last_notes(layers), *_unbinarizable_notes(loaded.model), *notes]
    header = _header(loaded, data, options, settings or {}, notes)
    return Report(header=header, layers=layers, totals=_totals(model, layers, extra), search=search,
                  ensemble=ensemble)  # fmt: skip


def _first_last_notes(layers: tuple[LayerReport, ...]) -> list[str]:
    if not layers:
        return ["the model has no Conv2d/Linear layer"]
    ends = {layers[0].name: layers[0], layers[-1].name: layers[-1]}
    return [
        f"layer {name} (first or last) is binarized ({row.mode}); the paper keeps it float"
        for name, row in ends.items()
        if row.mode != "float"
    ]


def _unbinarizable_notes(model: nn.Module) -> list[str]:
    """One note naming the Conv2d/Linear layers no mode map can binarize, with the reasons."""
    skipped = unbinarizable_layers(model)
    if not skipped:
        return []
    reasons: dict[str, list[str]] = {}
    for name, reason in skipped.items():
        reasons.setdefault(reason, []).append(name)
    parts = [f"{_names(names)}: {reason}" for reason, names in reasons.items()]
    return [
        f"{len(skipped)} Conv2d/Linear layers stay float whatever the modes: {'; '.join(parts)}"
    ]


def _never_negative_notes(rows: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """A note for the XNOR layers whose calibration input was never negative."""
    names = [n for n, row in rows.items() if row["input_never_negative"] and row["mode"] == "xnor"]
    return [f"{_names(names)}: {stats.NONNEGATIVE_INPUT_HINT}"] if names else []


def _names(names: list[str], shown: int = 6) -> str:
    """``a, b, c`` or ``a, b, c, ... (12 layers)``."""
    head = ", ".join(names[:shown])
    return head if len(names) <= shown else f"{head}, ... ({len(names)} layers)"


def _noise_notes(comparison: LatencyComparison) -> list[str]:
    """Whether the latency is noisy, and whether the engine side ran unfused (fx could not
    trace the model for ``xnorlab.deploy``)."""
    reason = comparison.speedup.noise_reason
    noise = [f"latency is noisy: {reason}"] if reason else []
    unfused = comparison.deployed is not None and not comparison.deployed.traced
    return [*noise, f"configured latency: {comparison.deploy_text()}"] if unfused else noise
