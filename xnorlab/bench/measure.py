"""Measurements: one conv (float32, int8, XNOR), BWN linear, a whole model."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.ao.nn.quantized import Conv2d as QuantizedConv2d

from xnorlab.bench.engine import Engine, SplitTiming, profile_split
from xnorlab.bench.machine import int8_engine
from xnorlab.bench.timing import ConvShape, ceiling_fraction, gops
from xnorlab.binary.binarize import binarize_weight, xnor_conv2d
from xnorlab.binary.surgery import binarize_model
from xnorlab.measure.machine import engine_context
from xnorlab.measure.timing import Op, RunPlan, Timing, speedup, time_interleaved
from xnorlab.models.zoo import build_torchvision
from xnorlab.runtime.deploy import deploy

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
    packed_weight_bytes: int | None = None  # the engine's packed bits (None: reference engine)
    max_rel_diff_vs_reference: float | None = None  # vs xnorlab.binary.binarize.xnor_conv2d
    loop_gmac: float | None = None  # the ISA's micro-kernel alone, 1 thread (bare popcount loop)

    @property
    def packed_bytes_bound(self) -> int:
        """Issue 3's bound: ``C_out * kh * kw * ceil(C_in / 64) * 8`` bytes of packed bits."""
        shape = self.shape
        words = -(-shape.in_channels // 64)
        return shape.out_channels * shape.kernel * shape.kernel * words * 8

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
            # per core: the micro-kernel runs on one thread
            "loop_ceiling_fraction": (
                self.loop_gmac / ceiling if self.loop_gmac is not None and ceiling > 0 else None
            ),
        }  # fmt: skip


def _int8_callables(
    x: Tensor, weight: Tensor, shape: ConvShape
) -> tuple[Callable[[], object], Callable[[], object]] | None:
    """Quantized conv (per-channel qint8 weight, quint8 activations) and its float-IO variant."""
    engine = int8_engine()
    if engine is None:
        return None
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


def _float_conv_ops(x: Tensor, weight: Tensor, shape: ConvShape) -> dict[str, Op]:
    x_last = x.contiguous(memory_format=torch.channels_last)
    weight_last = weight.contiguous(memory_format=torch.channels_last)
    stride, padding = shape.stride, shape.padding
    return {
        "float_nchw": lambda: F.conv2d(x, weight, None, stride, padding),
        "float_channels_last": lambda: F.conv2d(x_last, weight_last, None, stride, padding),
    }


def _isa_op(engine: Engine, isa: str, op: Op) -> tuple[Op, Op]:
    """``op`` with the engine switched to ``isa`` (untimed) before each call."""
    return (lambda: engine.set_isa(isa)), op


@dataclass(frozen=True)
class ConvGroup:
    """Everything measured for one conv shape and batch at one thread count."""

    baseline: BaselineTimings
    xnor: dict[str, Timing]  # per ISA
    split: dict[str, SplitTiming | None]  # per ISA
    max_rel_diff: dict[str, float]  # per ISA: engine output vs the core's torch simulation
    packed_weight_bytes: int | None


def measure_conv_group(
    engine: Engine,
    shape: ConvShape,
    batch: int,
    isas: Sequence[str],
    scaling: str,
    plan: RunPlan,
) -> ConvGroup:
    """Time one conv shape on every side, interleaved (``time_interleaved``): torch float32
    NCHW and channels_last, torch int8 (quantized input; float in/out), and the engine's XNOR
    conv from a float NCHW input for each ISA (weight packed once). Then profile each ISA and
    check its output against ``xnorlab.binary.binarize.xnor_conv2d``.
    """
    x = torch.randn(batch, shape.in_channels, shape.size, shape.size)
    weight = torch.randn(shape.out_channels, shape.in_channels, shape.kernel, shape.kernel)
    saved_engine = torch.backends.quantized.engine
    with torch.inference_mode(), warnings.catch_warnings():
        # torch 2.10+ deprecates quantized tensors (a UserWarning at creation); it is still
        # the int8 path a user has, so it is timed and the report notes say so
        warnings.filterwarnings("ignore", message=".*quantize", category=UserWarning)
        try:
            ops: dict[str, Op | tuple[Op, Op]] = dict(_float_conv_ops(x, weight, shape))
            quantized = _int8_callables(x, weight, shape)
            if quantized is not None:
                ops["int8"], ops["int8_float_io"] = quantized
            packed = engine.pack_conv(weight)
            xnor_op = lambda: engine.conv(x, packed, shape, scaling)  # noqa: E731
            ops.update({f"xnor_{isa}": _isa_op(engine, isa, xnor_op) for isa in isas})
            timings = time_interleaved(ops, plan)
        finally:
            torch.backends.quantized.engine = saved_engine
        reference = _reference_conv(x, weight, shape, scaling)
        details = {isa: _isa_details(engine, isa, xnor_op, plan, reference) for isa in isas}
    baseline = BaselineTimings(timings["float_nchw"], timings["float_channels_last"],
                               timings.get("int8"), timings.get("int8_float_io"))  # fmt: skip
    packed_bytes = getattr(packed, "weight_bytes", None)
    return ConvGroup(
        baseline, {isa: timings[f"xnor_{isa}"] for isa in isas},
        {isa: split for isa, (split, _) in details.items()},
        {isa: diff for isa, (_, diff) in details.items()},
        None if packed_bytes is None else int(packed_bytes),
    )  # fmt: skip


@dataclass(frozen=True)
class ThreadScalingResult:
    """The engine's XNOR conv on 1 thread and on ``threads`` threads, timed interleaved.

    The conv rows of different thread counts are measured minutes apart; on a shared machine
    a load change between them distorts their ratio. Here both sides alternate in blocks
    (``time_interleaved``), so the ratio compares like with like.
    """

    shape: ConvShape
    batch: int
    isa: str
    scaling: str
    threads: int
    one_thread: Timing
    many_threads: Timing

    def metrics(self) -> dict[str, float | None]:
        return {
            "speedup": speedup(self.one_thread.median_s, self.many_threads.median_s),
            "speedup_of_mins": speedup(self.one_thread.min_s, self.many_threads.min_s),
        }


def measure_thread_scaling(
    engine: Engine,
    shape: ConvShape,
    batch: int,
    isa: str,
    threads: int,
    scaling: str,
    plan: RunPlan,
) -> ThreadScalingResult:
    """Time the XNOR conv of ``shape`` at 1 and at ``threads`` engine threads, interleaved
    (the thread count is switched untimed before each block, followed by three untimed calls
    that wake the pool's workers and let the scheduler place them); the engine's thread count
    is restored afterwards."""
    x = torch.randn(batch, shape.in_channels, shape.size, shape.size)
    weight = torch.randn(shape.out_channels, shape.in_channels, shape.kernel, shape.kernel)
    engine.set_isa(isa)
    packed = engine.pack_conv(weight)

    def op() -> Tensor:
        return engine.conv(x, packed, shape, scaling)

    def switch_to(count: int) -> Op:
        def setup() -> None:  # the new count, then two settling calls (workers woken, placed)
            engine.set_threads(count)
            op()
            op()

        return setup

    ops: dict[str, Op | tuple[Op, Op]] = {
        "one": (switch_to(1), op),
        "many": (switch_to(threads), op),
    }
    before = engine.get_threads()
    try:
        with torch.inference_mode():
            timings = time_interleaved(ops, plan)
    finally:
        if before is not None:
            engine.set_threads(before)
    return ThreadScalingResult(shape, batch, isa, scaling, threads, timings["one"],
                               timings["many"])  # fmt: skip


def _reference_conv(x: Tensor, weight: Tensor, shape: ConvShape, scaling: str) -> Tensor:
    return xnor_conv2d(x, weight, None, shape.stride, shape.padding, scaling=scaling)


def _isa_details(
    engine: Engine, isa: str, op: Op, plan: RunPlan, reference: Tensor
) -> tuple[SplitTiming | None, float]:
    """The profiled split of ``op`` on ``isa`` and its max relative difference to
    ``reference`` (``max |out - ref| / max |ref|``)."""
    engine.set_isa(isa)
    out = op()
    assert isinstance(out, Tensor)
    diff = float((out - reference).abs().max()) / (float(reference.abs().max()) or 1.0)
    return profile_split(engine, op, max(plan.min_runs, 3)), diff


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
    max_rel_diff_vs_reference: float | None = None  # vs F.linear(x, alpha * sign(W))

    def metrics(self) -> dict[str, float | None]:
        macs = self.batch * self.in_features * self.out_features
        return {
            "speedup_vs_float": speedup(self.float_linear.median_s, self.bwn.median_s),
            "gops_float": gops(macs, self.float_linear.median_s),
            "gops_bwn": gops(macs, self.bwn.median_s),
            "weight_gb_per_s_float": self.float_weight_bytes / self.float_linear.median_s / 1e9,
        }


def measure_bwn_linear(
    engine: Engine,
    in_features: int,
    out_features: int,
    batch: int,
    isas: Sequence[str],
    plan: RunPlan,
) -> tuple[Timing, dict[str, tuple[Timing, SplitTiming | None, float]], int | None]:
    """Time ``F.linear`` and the engine's BWN linear for each ISA, interleaved (weight packed
    once); returns (float timing, ``{isa: (bwn timing, split, max rel diff vs
    F.linear(x, alpha * sign(W)))}``, packed weight bytes)."""
    x = torch.randn(batch, in_features)
    weight = torch.randn(out_features, in_features)
    with torch.inference_mode():
        packed = engine.pack_linear(weight)
        bwn_op = lambda: engine.bwn_linear(x, packed)  # noqa: E731
        ops: dict[str, Op | tuple[Op, Op]] = {"float": lambda: F.linear(x, weight)}
        ops.update({f"bwn_{isa}": _isa_op(engine, isa, bwn_op) for isa in isas})
        timings = time_interleaved(ops, plan)
        reference = F.linear(x, binarize_weight(weight))
        details = {isa: _isa_details(engine, isa, bwn_op, plan, reference) for isa in isas}
    packed_bytes = getattr(packed, "weight_bytes", None)
    per_isa = {isa: (timings[f"bwn_{isa}"], *details[isa]) for isa in isas}
    return timings["float"], per_isa, None if packed_bytes is None else int(packed_bytes)


@dataclass(frozen=True)
class ModelResult:
    """A whole model at inference: float PyTorch against the binarized model in the engine.

    The engine runs the binarized model twice: as built (NCHW, ``engine_time``) and converted
    to channels_last with a channels_last input (``engine_channels_last``), the layout in which
    torch's float stem (conv1, max-pool) is fast, and ``deployed``: ``xnorlab.deploy`` of it
    (packed once, channels_last, conv -> BN -> add -> ReLU fused) on the NCHW input. Splits are
    summed over one forward's native calls; their ``call_s`` is the rest of the model, run by
    torch.
    """

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
    engine_channels_last: Timing
    split: SplitTiming | None
    split_channels_last: SplitTiming | None
    native_calls_per_forward: int
    max_rel_diff_vs_simulation: float
    deployed: Timing | None = None

    def metrics(self) -> dict[str, float | None]:
        best = min(self.float_nchw.median_s, self.float_channels_last.median_s)
        nchw = speedup(best, self.engine_time.median_s)
        last = speedup(best, self.engine_channels_last.median_s)
        deployed = None if self.deployed is None else speedup(best, self.deployed.median_s)
        return {"speedup_vs_float": nchw, "speedup_channels_last_vs_float": last,
                "speedup_best_layout": max(nchw, last),
                "speedup_deployed_vs_float": deployed}  # fmt: skip


@dataclass(frozen=True)
class _ModelCopies:
    """The four models one comparison runs: float NCHW / channels_last, binarized NCHW /
    channels_last (the binarized pair shares nothing with the float pair)."""

    float_nchw: nn.Module
    float_channels_last: nn.Module
    binary_nchw: nn.Module
    binary_channels_last: nn.Module


def _model_copies(name: str, scaling: str) -> _ModelCopies:
    """Build the copies outside ``inference_mode``: tensors made inside it are inference
    tensors without a version counter, and the copies must behave like a user's model."""
    model = build_torchvision(name).eval()
    float_nchw = copy.deepcopy(model)
    float_last = copy.deepcopy(model).to(memory_format=torch.channels_last)
    binarize_model(model, "paper", scaling=scaling)
    binary_last = copy.deepcopy(model).to(memory_format=torch.channels_last)
    return _ModelCopies(float_nchw, float_last, model, binary_last)


def measure_model(
    engine: Engine, name: str, image_size: int, scaling: str, plan: RunPlan
) -> tuple[ModelResult, str]:
    """Time torchvision ``name`` (random init) in float (NCHW and channels_last copies) and
    binarized with the ``paper`` preset (first/last layer float) through the engine (NCHW and
    channels_last copies), batch 1, the four interleaved; the engine's outputs are checked
    against the torch simulation of the same binarized model.

    Returns the result and a note on how the engine ran (native or simulated)."""
    m = _model_copies(name, scaling)
    deployed = deploy(m.binary_nchw)  # outside inference_mode, as the copies (above)
    x = torch.randn(1, 3, image_size, image_size)
    x_last = x.contiguous(memory_format=torch.channels_last)
    ops: dict[str, Op | tuple[Op, Op]] = {
        "float_nchw": lambda: m.float_nchw(x),
        "float_channels_last": lambda: m.float_channels_last(x_last),
        "engine": lambda: m.binary_nchw(x),
        "engine_channels_last": lambda: m.binary_channels_last(x_last),
        "deployed": lambda: deployed(x),
    }
    runs = max(plan.min_runs, 3)
    with torch.inference_mode():
        simulated = m.binary_nchw(x)
        with engine_context(m.binary_nchw), engine_context(m.binary_channels_last):
            outputs = (m.binary_nchw(x), m.binary_channels_last(x_last), deployed(x))
            timings = time_interleaved(ops, plan)
            splits = (profile_split(engine, lambda: m.binary_nchw(x), runs),
                      profile_split(engine, lambda: m.binary_channels_last(x_last), runs))  # fmt: skip
            calls = _native_calls(engine, lambda: m.binary_nchw(x))
    scale = float(simulated.abs().max()) or 1.0
    diff = max(float((out - simulated).abs().max()) / scale for out in outputs)
    backend = "native" if calls else "torch simulation"
    result = ModelResult(
        name, (1, 3, image_size, image_size), "paper", scaling, torch.get_num_threads(),
        engine.active_isa(), backend, timings["float_nchw"], timings["float_channels_last"],
        timings["engine"], timings["engine_channels_last"], *splits, calls, diff,
        timings["deployed"],
    )  # fmt: skip
    return result, f"model: XNOR layers ran via {backend} ({calls} native calls per forward)"


def _native_calls(engine: Engine, op: Op) -> int:
    """How many native calls one run of ``op`` makes."""
    with engine.profile() as records:
        op()
        return len(records)
