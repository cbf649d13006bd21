"""Measurements: one conv (float32, int8, XNOR), BWN linear, a whole model."""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xnorlab.core.benchmark.engine import Engine, SplitTiming, profile_split
from xnorlab.core.benchmark.machine import int8_engine
from xnorlab.core.benchmark.timing import (
    ConvShape,
    RunPlan,
    Timing,
    ceiling_fraction,
    gops,
    speedup,
    time_callable,
)

# --------------------------------------------------------------------------- conv rows


@dataclass(frozen=True)
class BaselineTimings:
    """torch's timings of one conv: float32 NCHW and channels_last, int8 (x86/fbgemm).

    ``int8`` times the quantized conv alone on a quint8 channels_last input (what a quantized
    model pays per layer, the most favourable figure for int8); ``int8_float_io`` adds the
    quantize of the float NCHW input and the dequantize of the output. None when torch has no
    x86/fbgemm quantized engine.
    """

    float_nchw: Timing
    float_channels_last: Timing
    int8: Timing | None
    int8_float_io: Timing | None

    @property
    def float_best(self) -> Timing:
        """The better (lower median) of NCHW and channels_last."""
        nchw, last = self.float_nchw, self.float_channels_last
        return nchw if nchw.median_s <= last.median_s else last

    @property
    def float_best_layout(self) -> str:
        return "nchw" if self.float_best is self.float_nchw else "channels_last"


@dataclass(frozen=True)
class ConvResult:
    """One conv shape at one (ISA, threads, batch): baselines, XNOR time, split, ceiling."""

    shape: ConvShape
    batch: int
    threads: int
    isa: str
    scaling: str
    baseline: BaselineTimings
    xnor: Timing
    split: SplitTiming | None
    popcount_ceiling_gmac: float  # per core, for this ISA

    @property
    def macs(self) -> int:
        return self.shape.macs(self.batch)

    def metrics(self) -> dict[str, float | None]:
        """Derived figures: speedups, GOP/s, fractions of the popcount ceiling."""
        xnor_s = self.xnor.median_s
        int8 = self.baseline.int8
        int8_io = self.baseline.int8_float_io
        split = self.split
        ceiling = self.popcount_ceiling_gmac
        return {
            "speedup_vs_float": speedup(self.baseline.float_best.median_s, xnor_s),
            # min over min: the least disturbed ratio when other processes share the CPU
            "speedup_vs_float_of_mins": speedup(
                min(self.baseline.float_nchw.min_s, self.baseline.float_channels_last.min_s),
                self.xnor.min_s,
            ),
            "speedup_vs_int8": speedup(int8.median_s, xnor_s) if int8 else None,
            "speedup_vs_int8_float_io": speedup(int8_io.median_s, xnor_s) if int8_io else None,
            "gops_float": gops(self.macs, self.baseline.float_best.median_s),
            "gops_int8": gops(self.macs, int8.median_s) if int8 else None,
            "gops_xnor": gops(self.macs, xnor_s),
            "ceiling_fraction": ceiling_fraction(self.macs, xnor_s, ceiling, self.threads),
            "popcount_phase_ceiling_fraction": (
                ceiling_fraction(self.macs, split.popcount_s, ceiling, self.threads)
                if split is not None and split.popcount_s > 0 else None
            ),
        }  # fmt: skip


def _int8_callables(
    x: Tensor, weight: Tensor, shape: ConvShape
) -> tuple[Callable[[], object], Callable[[], object]] | None:
    """Quantized conv (per-channel qint8 weight, quint8 activations) and its float-IO variant."""
    engine = int8_engine()
    if engine is None:
        return None
    from torch.ao.nn.quantized import Conv2d as QuantizedConv2d

    torch.backends.quantized.engine = engine
    qconv = QuantizedConv2d(  # type: ignore[no-untyped-call]
        shape.in_channels, shape.out_channels, shape.kernel, shape.stride, shape.padding
    )
    weight_scales = (weight.abs().flatten(1).amax(dim=1) / 127.0).clamp_min(1e-8).double()
    zero_points = torch.zeros(shape.out_channels, dtype=torch.int64)
    qweight = torch.quantize_per_channel(weight, weight_scales, zero_points, 0, torch.qint8)
    qconv.set_weight_bias(qweight, None)
    reference = F.conv2d(x, weight, None, shape.stride, shape.padding)
    qconv.scale = max(float(reference.abs().max()) / 127.0, 1e-8)
    qconv.zero_point = 128
    x_scale = max(float(x.abs().max()) / 127.0, 1e-8)
    qx = torch.quantize_per_tensor(
        x.contiguous(memory_format=torch.channels_last), x_scale, 128, torch.quint8
    )

    def float_io() -> Tensor:
        out: Tensor = qconv(torch.quantize_per_tensor(x, x_scale, 128, torch.quint8))
        return out.dequantize()

    return (lambda: qconv(qx)), float_io


def measure_baselines(shape: ConvShape, batch: int, plan: RunPlan) -> BaselineTimings:
    """Time torch float32 (NCHW, channels_last) and int8 on one conv shape."""
    x = torch.randn(batch, shape.in_channels, shape.size, shape.size)
    weight = torch.randn(shape.out_channels, shape.in_channels, shape.kernel, shape.kernel)
    x_last = x.contiguous(memory_format=torch.channels_last)
    weight_last = weight.contiguous(memory_format=torch.channels_last)
    stride, padding = shape.stride, shape.padding
    with torch.inference_mode():
        nchw = time_callable(lambda: F.conv2d(x, weight, None, stride, padding), plan)
        last = time_callable(lambda: F.conv2d(x_last, weight_last, None, stride, padding), plan)
        saved_engine = torch.backends.quantized.engine
        try:
            with warnings.catch_warnings():
                # torch 2.10+ deprecates quantized tensors (a UserWarning at creation); it is
                # still the int8 path a user has, so time it and say so in the report notes
                warnings.filterwarnings("ignore", message=".*quantize", category=UserWarning)
                quantized = _int8_callables(x, weight, shape)
                int8 = time_callable(quantized[0], plan) if quantized else None
                int8_io = time_callable(quantized[1], plan) if quantized else None
        finally:
            torch.backends.quantized.engine = saved_engine
    return BaselineTimings(nchw, last, int8, int8_io)


def measure_xnor_conv(
    engine: Engine, shape: ConvShape, batch: int, scaling: str, plan: RunPlan
) -> tuple[Timing, SplitTiming | None]:
    """Time the engine's XNOR conv from a float NCHW input (weight packed once), and its split."""
    x = torch.randn(batch, shape.in_channels, shape.size, shape.size)
    weight = torch.randn(shape.out_channels, shape.in_channels, shape.kernel, shape.kernel)
    with torch.inference_mode():
        packed = engine.pack_conv(weight)

        def call() -> object:
            return engine.conv(x, packed, shape, scaling)

        timing = time_callable(call, plan)
        split = profile_split(engine, call, max(plan.min_runs, 3))
    return timing, split


# --------------------------------------------------------------------------- linear and model


@dataclass(frozen=True)
class LinearResult:
    """BWN linear (float input, packed +-1 weights) against torch float32 ``F.linear``."""

    in_features: int
    out_features: int
    batch: int
    threads: int
    isa: str
    float_linear: Timing
    bwn: Timing
    split: SplitTiming | None
    float_weight_bytes: int
    packed_weight_bytes: int | None

    def metrics(self) -> dict[str, float | None]:
        macs = self.batch * self.in_features * self.out_features
        return {
            "speedup_vs_float": speedup(self.float_linear.median_s, self.bwn.median_s),
            "gops_float": gops(macs, self.float_linear.median_s),
            "gops_bwn": gops(macs, self.bwn.median_s),
            "weight_gb_per_s_float": self.float_weight_bytes / self.float_linear.median_s / 1e9,
        }


def measure_bwn_linear(
    engine: Engine, in_features: int, out_features: int, batch: int, plan: RunPlan
) -> tuple[Timing, Timing, SplitTiming | None, int | None]:
    """Time ``F.linear`` and the engine's BWN linear (weight packed once); returns
    (float, bwn, split, packed weight bytes or None)."""
    x = torch.randn(batch, in_features)
    weight = torch.randn(out_features, in_features)
    with torch.inference_mode():
        packed = engine.pack_linear(weight)
        float_timing = time_callable(lambda: F.linear(x, weight), plan)
        bwn_timing = time_callable(lambda: engine.bwn_linear(x, packed), plan)
        split = profile_split(engine, lambda: engine.bwn_linear(x, packed), max(plan.min_runs, 3))
    packed_bytes = getattr(packed, "weight_bytes", None)
    return float_timing, bwn_timing, split, None if packed_bytes is None else int(packed_bytes)


@dataclass(frozen=True)
class ModelResult:
    """A whole model at inference: float PyTorch against the binarized model in the engine."""

    model: str
    input_shape: tuple[int, ...]
    preset: str
    scaling: str
    threads: int
    isa: str
    backend: str
    float_nchw: Timing
    float_channels_last: Timing
    engine_time: Timing
    split: SplitTiming | None  # summed over the native calls of one forward
    native_calls_per_forward: int
    max_rel_diff_vs_simulation: float

    def metrics(self) -> dict[str, float | None]:
        best = min(self.float_nchw.median_s, self.float_channels_last.median_s)
        return {"speedup_vs_float": speedup(best, self.engine_time.median_s)}


def _native_backend_context(model: nn.Module) -> contextlib.AbstractContextManager[Any]:
    try:
        from xnorlab.kernels.integration import native_backend
    except ImportError:
        return contextlib.nullcontext(model)
    context: contextlib.AbstractContextManager[Any] = native_backend(model)
    return context


def _float_model_timings(model: nn.Module, x: Tensor, plan: RunPlan) -> tuple[Timing, Timing]:
    nchw = time_callable(lambda: model(x), plan)
    last_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x_last = x.contiguous(memory_format=torch.channels_last)
    last = time_callable(lambda: last_model(x_last), plan)
    return nchw, last


def measure_model(
    engine: Engine, name: str, image_size: int, scaling: str, plan: RunPlan
) -> tuple[ModelResult, str]:
    """Time torchvision ``name`` (random init) in float, then binarized with the ``paper``
    preset (first/last layer float) running through the engine; batch 1, NCHW input.

    Returns the result and a note on how the engine ran (native or simulated)."""
    from xnorlab.core.surgery import binarize_model
    from xnorlab.core.zoo import build_torchvision

    model = build_torchvision(name).eval()
    x = torch.randn(1, 3, image_size, image_size)
    with torch.inference_mode():
        float_nchw, float_last = _float_model_timings(model, x, plan)
        binarize_model(model, "paper", scaling=scaling)
        simulated = model(x)
        with _native_backend_context(model):
            through_engine = model(x)
            engine_time = time_callable(lambda: model(x), plan)
            split = profile_split(engine, lambda: model(x), max(plan.min_runs, 3))
            with engine.profile() as records:
                model(x)
                calls = len(records) if records is not None else 0
    scale = float(simulated.abs().max()) or 1.0
    diff = float((through_engine - simulated).abs().max()) / scale
    backend = "native" if calls else "torch simulation"
    result = ModelResult(
        name, (1, 3, image_size, image_size), "paper", scaling, torch.get_num_threads(),
        engine.active_isa(), backend, float_nchw, float_last, engine_time, split, calls, diff,
    )  # fmt: skip
    note = f"model: XNOR layers ran via {backend} ({calls} native calls per forward)"
    return result, note
