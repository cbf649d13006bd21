"""Benchmark of the XNOR engine against torch float32 and int8 (Qt-free; CLI and GUI call it).

Data first: every measuring function returns frozen dataclasses; ``xnorlab.cli.bench`` renders
them as a table or JSON. Conventions used in every figure:

* A time is the median of many runs after warm-up (min and max kept); both sides run with the
  same thread count (``torch.set_num_threads`` and the engine's ``set_threads``).
* The float baseline of a conv is the better of ``F.conv2d`` on NCHW and on channels_last.
* The XNOR time is everything a user pays from a float NCHW tensor to a float output (sign +
  pack, popcount conv, padding correction, scaling, allocation, the Python call); the weight is
  packed once beforehand, as a frozen layer does.
* ``GOP/s = 2 * MACs / time`` (a binary MAC counts 2 ops like a float MAC counts 2 FLOPs);
  ``speedup = baseline time / xnor time``; ``ceiling fraction = achieved binary MAC/s /
  (per-core popcount ceiling * threads)``.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xnorlab.core.errors import XnorlabError

#: glibc settings applied to both sides (must be in the environment before the process starts):
#: keep buffers up to 32 MiB (glibc's maximum mmap threshold) on the heap and never trim it, so
#: page faults of freshly mmapped outputs are not part of any timing.
MALLOC_ENV: dict[str, str] = {
    "MALLOC_MMAP_THRESHOLD_": "33554432",
    "MALLOC_TRIM_THRESHOLD_": "4294967296",
}
#: 1-minute load average above which timings on this 2-core machine are called noisy.
BUSY_LOAD = 0.5


class BenchmarkError(XnorlabError):
    """A benchmark setting the user chose cannot be run (bad ISA, thread count, batch...)."""


@dataclass(frozen=True)
class ConvShape:
    """A square conv layer to time: ``in_channels @ size x size``, ``kernel x kernel``."""

    name: str
    in_channels: int
    out_channels: int
    size: int
    kernel: int = 3
    stride: int = 1
    padding: int = 1

    @property
    def out_size(self) -> int:
        """Output height/width: ``(size + 2*padding - kernel) // stride + 1``."""
        return (self.size + 2 * self.padding - self.kernel) // self.stride + 1

    def macs(self, batch: int) -> int:
        """Multiply-accumulates: ``N * H_out * W_out * C_out * C_in * k * k``."""
        per_pixel = self.out_channels * self.in_channels * self.kernel * self.kernel
        return batch * self.out_size * self.out_size * per_pixel


#: ResNet-18's 3x3 stride-1 convs (stages 1-4).
RESNET18_SHAPES: tuple[ConvShape, ...] = (
    ConvShape("64@56x56", 64, 64, 56),
    ConvShape("128@28x28", 128, 128, 28),
    ConvShape("256@14x14", 256, 256, 14),
    ConvShape("512@7x7", 512, 512, 7),
)
#: Tiny shapes of ``--quick`` (checks the harness, not the speed).
QUICK_SHAPES: tuple[ConvShape, ...] = (
    ConvShape("16@8x8", 16, 16, 8),
    ConvShape("70@5x5", 70, 24, 5),
)


@dataclass(frozen=True)
class Timing:
    """Wall time of one operation over ``runs`` timed runs, in seconds."""

    median_s: float
    min_s: float
    max_s: float
    runs: int

    @classmethod
    def from_samples(cls, samples_s: Sequence[float]) -> Timing:
        """Summarise samples (seconds); raises ``ValueError`` when there is none."""
        if not samples_s:
            raise ValueError("no timing samples")
        return cls(statistics.median(samples_s), min(samples_s), max(samples_s), len(samples_s))


@dataclass(frozen=True)
class RunPlan:
    """How long to time each operation: warm-up calls, then runs until both minimums are met."""

    warmup: int = 3
    min_runs: int = 15
    max_runs: int = 300
    min_total_s: float = 0.4


QUICK_PLAN = RunPlan(warmup=1, min_runs=3, max_runs=5, min_total_s=0.0)


def time_callable(fn: Callable[[], object], plan: RunPlan) -> Timing:
    """Call ``fn`` ``plan.warmup`` times, then time it until ``min_runs`` and ``min_total_s``."""
    for _ in range(plan.warmup):
        fn()
    samples: list[float] = []
    total = 0.0
    while len(samples) < plan.max_runs and (
        len(samples) < plan.min_runs or total < plan.min_total_s
    ):
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        samples.append(elapsed)
        total += elapsed
    return Timing.from_samples(samples)


def speedup(baseline_s: float, candidate_s: float) -> float:
    """How many times faster the candidate is: ``baseline_s / candidate_s``."""
    if candidate_s <= 0:
        raise ValueError(f"candidate time must be > 0, got {candidate_s}")
    return baseline_s / candidate_s


def gops(macs: int, seconds: float) -> float:
    """Giga-operations per second with 2 ops per MAC: ``2 * macs / seconds / 1e9``."""
    if seconds <= 0:
        raise ValueError(f"time must be > 0, got {seconds}")
    return 2.0 * macs / seconds / 1e9


def ceiling_fraction(macs: int, seconds: float, ceiling_gmac_per_core: float, threads: int) -> float:
    """Fraction of the ceiling reached: ``macs / seconds / (ceiling * 1e9 * threads)``."""
    if ceiling_gmac_per_core <= 0 or threads <= 0:
        raise ValueError("ceiling and threads must be > 0")
    return macs / seconds / (ceiling_gmac_per_core * 1e9 * threads)


# --------------------------------------------------------------------------- ceilings

#: kernel.md's per-core figures for a Xeon with AVX-512 VPOPCNTDQ, used only when the
#: microbenchmark cannot be built here (no C compiler, or ``benchmarks/`` not shipped).
DOCUMENTED_CEILINGS: dict[str, float] = {
    "popcount_avx512": 965.0, "popcount_avx2": 254.0, "popcount_scalar": 190.0,
    "fma_fp32": 89.0, "vnni_int8": 330.0,
}  # fmt: skip
_CEILING_SOURCE = Path(__file__).resolve().parents[2] / "benchmarks" / "ceilings.c"
# (name in the report, C function, CPU flags it needs)
_CEILING_LOOPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("popcount_avx512", "popcount_avx512_gbmac", ("avx512f", "avx512_vpopcntdq")),
    ("popcount_avx2", "popcount_avx2_lut_gbmac", ("avx2",)),
    ("popcount_scalar", "popcount_scalar_gbmac", ("popcnt",)),
    ("fma_fp32_512", "fma_avx512_gmac", ("avx512f",)),
    ("fma_fp32_256", "fma_avx2_gmac", ("avx2", "fma")),
    ("vnni_int8", "vnni_avx512_gmac", ("avx512f", "avx512_vnni")),
)


@dataclass(frozen=True)
class Ceilings:
    """Per-core throughput ceilings in G (binary) MAC/s, and where they come from."""

    rates_gmac: dict[str, float]
    source: str

    def popcount_for(self, isa: str) -> float:
        """The popcount ceiling of ``isa``: the best loop that ISA may use (avx2: nibble LUT
        or scalar popcnt); ``reference`` and unknown names get the best one of the machine."""
        rates = self.rates_gmac
        scalar = rates.get("popcount_scalar", 0.0)
        by_isa = {
            "avx512": rates.get("popcount_avx512", 0.0),
            "avx2": max(rates.get("popcount_avx2", 0.0), scalar),
            "scalar": scalar,
        }
        value = by_isa.get(isa, max(by_isa.values()))
        return value if value > 0 else max(by_isa.values())

    @property
    def fma_gmac(self) -> float:
        """fp32 FMA ceiling (the better of 512- and 256-bit)."""
        rates = self.rates_gmac
        return max(rates.get("fma_fp32_512", 0.0), rates.get("fma_fp32_256", 0.0),
                   rates.get("fma_fp32", 0.0))  # fmt: skip


def cpu_flags() -> set[str]:
    """The CPU feature flags from ``/proc/cpuinfo`` (empty set where it is not readable)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_model() -> str:
    """The CPU model name (``/proc/cpuinfo``), else ``platform.processor()``."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _build_ceiling_library(workdir: Path) -> ctypes.CDLL:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None or not _CEILING_SOURCE.is_file():
        raise OSError("no C compiler or no benchmarks/ceilings.c")
    library = workdir / "ceilings.so"
    subprocess.run(
        [compiler, "-O2", "-shared", "-fPIC", str(_CEILING_SOURCE), "-o", str(library)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return ctypes.CDLL(str(library))


def _run_ceiling_loop(library: ctypes.CDLL, symbol: str, iterations: int) -> float:
    function = getattr(library, symbol)
    function.restype = ctypes.c_double
    function.argtypes = [ctypes.c_int64, ctypes.POINTER(ctypes.c_int64)]
    sink = ctypes.c_int64()
    return max(float(function(iterations, ctypes.byref(sink))) for _ in range(3))


def measure_ceilings(quick: bool = False) -> Ceilings:
    """Measure the per-core ceilings with ``benchmarks/ceilings.c`` (register-only loops, one
    thread); fall back to kernel.md's documented Xeon figures when it cannot be built."""
    flags = cpu_flags()
    iterations = 200_000 if quick else 20_000_000
    try:
        with tempfile.TemporaryDirectory(prefix="xnorlab-ceil-") as workdir:
            library = _build_ceiling_library(Path(workdir))
            rates = {
                name: _run_ceiling_loop(library, symbol, iterations)
                for name, symbol, needs in _CEILING_LOOPS
                if all(flag in flags for flag in needs)
            }
    except (OSError, subprocess.SubprocessError) as exc:
        return Ceilings(dict(DOCUMENTED_CEILINGS), f"kernel.md Xeon figures (not measured: {exc})")
    return Ceilings(rates, "measured here: benchmarks/ceilings.c, register-only loops, 1 core")


# --------------------------------------------------------------------------- the engine


@dataclass(frozen=True)
class SplitTiming:
    """Where the XNOR time goes (medians, seconds): the engine's own phases from
    ``xnorlab.kernels.profile()`` and ``call_s`` = wall time minus the engine's total (Python
    call, validation, output allocation outside the C++ timers)."""

    pack_s: float
    popcount_s: float
    scale_s: float
    other_s: float
    call_s: float


class Engine:
    """The XNOR engine under test: ``xnorlab.kernels`` when its native facade is there, else
    the core's torch simulation (``xnorlab.core.binarize``), labelled ``reference``."""

    def __init__(self) -> None:
        import xnorlab.kernels as kernels

        self._kernels: Any = kernels
        self.available = all(
            hasattr(kernels, name)
            for name in ("info", "xnor_conv2d", "pack_conv2d_weight", "set_threads")
        )
        self.info: dict[str, Any] = dict(kernels.info()) if self.available else {}

    @property
    def label(self) -> str:
        """``native`` / ``reference`` as the facade reports it, or the core simulation."""
        if not self.available:
            return "reference (xnorlab.core.binarize torch simulation; xnorlab.kernels absent)"
        return str(self.info.get("backend", "native"))

    @property
    def is_native(self) -> bool:
        return self.available and self.info.get("backend") == "native"

    def supported_isas(self) -> list[str]:
        return [str(i) for i in self.info.get("supported_isas", [])] if self.is_native else []

    def active_isa(self) -> str:
        return str(self._kernels.info()["isa"]) if self.is_native else "reference"

    def set_isa(self, isa: str) -> None:
        if self.is_native:
            self._kernels.set_isa(isa)

    def set_threads(self, threads: int) -> None:
        if self.available:
            self._kernels.set_threads(threads)

    def get_threads(self) -> int | None:
        return int(self._kernels.get_threads()) if self.available else None

    def pack_conv(self, weight: Tensor) -> Any:
        return self._kernels.pack_conv2d_weight(weight) if self.available else weight

    def conv(self, x: Tensor, packed: Any, shape: ConvShape, scaling: str) -> Tensor:
        if self.available:
            out: Tensor = self._kernels.xnor_conv2d(
                x, packed, stride=shape.stride, padding=shape.padding, pad_mode="zero",
                scaling=scaling,
            )  # fmt: skip
            return out
        from xnorlab.core.binarize import xnor_conv2d

        return xnor_conv2d(x, packed, None, shape.stride, shape.padding, scaling=scaling)

    def pack_linear(self, weight: Tensor) -> Any:
        if self.available and hasattr(self._kernels, "pack_linear_weight"):
            return self._kernels.pack_linear_weight(weight)
        from xnorlab.core.binarize import binarize_weight

        return binarize_weight(weight).detach()  # alpha * sign(W), precomputed once

    def bwn_linear(self, x: Tensor, packed: Any) -> Tensor:
        if self.available and hasattr(self._kernels, "bwn_linear"):
            out: Tensor = self._kernels.bwn_linear(x, packed)
            return out
        return F.linear(x, packed)

    @contextlib.contextmanager
    def profile(self) -> Iterator[list[Any] | None]:
        """``xnorlab.kernels.profile()`` when it exists (yields its record list), else None."""
        if self.available and hasattr(self._kernels, "profile"):
            with self._kernels.profile() as records:
                yield records
        else:
            yield None


def profile_split(engine: Engine, fn: Callable[[], object], runs: int) -> SplitTiming | None:
    """Run ``fn`` ``runs`` times under the engine's profiler; median split per call.

    Returns None when the engine has no profiler or ``fn`` made no native call. A call that
    makes several native calls (a whole model) has its records summed.
    """
    walls: list[float] = []
    per_call: list[list[Any]] = []
    with engine.profile() as records:
        if records is None:
            return None
        for _ in range(runs):
            before = len(records)
            start = time.perf_counter()
            fn()
            walls.append(time.perf_counter() - start)
            per_call.append(list(records[before:]))
    if not any(per_call):
        return None

    def median_of(attr: str) -> float:
        return statistics.median(sum(float(getattr(r, attr)) for r in call) for call in per_call)

    totals = [sum(float(r.total_s) for r in call) for call in per_call]
    call_s = max(0.0, statistics.median(w - t for w, t in zip(walls, totals, strict=True)))
    return SplitTiming(median_of("pack_s"), median_of("popcount_s"), median_of("scale_s"),
                       median_of("other_s"), call_s)  # fmt: skip


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


def _int8_engine() -> str | None:
    engines = torch.backends.quantized.supported_engines
    return next((name for name in ("x86", "fbgemm") if name in engines), None)


def _int8_callables(
    x: Tensor, weight: Tensor, shape: ConvShape
) -> tuple[Callable[[], object], Callable[[], object]] | None:
    """Quantized conv (per-channel qint8 weight, quint8 activations) and its float-IO variant."""
    engine = _int8_engine()
    if engine is None:
        return None
    from torch.ao.nn.quantized import Conv2d as QuantizedConv2d

    torch.backends.quantized.engine = engine
    qconv = QuantizedConv2d(
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
        return qconv(torch.quantize_per_tensor(x, x_scale, 128, torch.quint8)).dequantize()

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
    return native_backend(model)  # type: ignore[no-any-return]


def _float_model_timings(model: nn.Module, x: Tensor, plan: RunPlan) -> tuple[Timing, Timing]:
    nchw = time_callable(lambda: model(x), plan)
    last_model = copy.deepcopy(model).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
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


# --------------------------------------------------------------------------- the whole run


@dataclass(frozen=True)
class BenchConfig:
    """What to run. ``isas`` empty = the engine's default ISA, plus ``avx2`` forced when the
    CPU supports it and it is not the default."""

    threads: tuple[int, ...] = (1, 2)
    batches: tuple[int, ...] = (1, 8)
    isas: tuple[str, ...] = ()
    scaling: str = "kmap"
    quick: bool = False
    linear_features: tuple[int, int] = (9216, 4096)
    model: str = "resnet18"
    model_image_size: int = 224

    @classmethod
    def quick_config(cls, **overrides: Any) -> BenchConfig:
        """Tiny shapes and few runs: checks the harness end to end in seconds."""
        fields: dict[str, Any] = {"quick": True, "linear_features": (256, 64),
                                  "model_image_size": 64}  # fmt: skip
        fields.update(overrides)
        return cls(**fields)

    @property
    def shapes(self) -> tuple[ConvShape, ...]:
        return QUICK_SHAPES if self.quick else RESNET18_SHAPES

    @property
    def plan(self) -> RunPlan:
        return QUICK_PLAN if self.quick else RunPlan()


@dataclass(frozen=True)
class MachineInfo:
    """Everything that decides the numbers: CPU, ISA, threads, versions, load, malloc env."""

    cpu_model: str
    logical_cpus: int
    cpu_simd_flags: tuple[str, ...]
    torch_version: str
    torch_cpu_capability: str
    int8_engine: str | None
    engine: str
    engine_info: dict[str, Any]
    python_version: str
    date_utc: str
    malloc_env: dict[str, str | None]
    load_start: tuple[float, float, float]
    load_end: tuple[float, float, float] | None = None

    @property
    def busy_warning(self) -> str | None:
        """A warning when the 1-minute load (another helper's job) makes timings noisy."""
        loads = [self.load_start[0]] + ([self.load_end[0]] if self.load_end else [])
        if max(loads) < BUSY_LOAD:
            return None
        return (
            f"machine busy (1-min load {', '.join(f'{v:.2f}' for v in loads)} on "
            f"{self.logical_cpus} CPUs): timings are noisy; rerun when `uptime` is low"
        )


_SIMD_FLAGS = ("popcnt", "avx2", "fma", "avx512f", "avx512bw", "avx512_vpopcntdq",
               "avx512_vnni", "avx512_bitalg")  # fmt: skip


def machine_info(engine: Engine) -> MachineInfo:
    """Describe this machine and process now (load average at the start of the run)."""
    flags = cpu_flags()
    return MachineInfo(
        cpu_model=cpu_model(),
        logical_cpus=os.cpu_count() or 1,
        cpu_simd_flags=tuple(f for f in _SIMD_FLAGS if f in flags),
        torch_version=torch.__version__,
        torch_cpu_capability=str(torch.backends.cpu.get_cpu_capability()),
        int8_engine=_int8_engine(),
        engine=engine.label,
        engine_info=dict(engine.info),
        python_version=platform.python_version(),
        date_utc=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        malloc_env={name: os.environ.get(name) for name in MALLOC_ENV},
        load_start=os.getloadavg(),
    )


@dataclass(frozen=True)
class BenchReport:
    """The whole benchmark: data only; ``xnorlab.cli.bench`` renders it."""

    machine: MachineInfo
    ceilings: Ceilings
    config: BenchConfig
    convs: list[ConvResult] = field(default_factory=list)
    linears: list[LinearResult] = field(default_factory=list)
    models: list[ModelResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict: every dataclass field plus each row's derived ``metrics``."""
        machine = asdict(self.machine) | {"busy_warning": self.machine.busy_warning}
        return {
            "machine": machine,
            "ceilings": asdict(self.ceilings),
            "config": asdict(self.config),
            "convs": [_row_dict(row) for row in self.convs],
            "linears": [_row_dict(row) for row in self.linears],
            "models": [_row_dict(row) for row in self.models],
            "notes": list(self.notes),
        }


def _row_dict(row: ConvResult | LinearResult | ModelResult) -> dict[str, Any]:
    data = asdict(row)
    if isinstance(row, ConvResult):
        data["macs"] = row.macs
        data["baseline"]["float_best_layout"] = row.baseline.float_best_layout
    data["metrics"] = row.metrics()
    return data


Progress = Callable[[str], None]


def _isa_list(engine: Engine, requested: Sequence[str]) -> list[str]:
    """The ISAs to run, validated against what the engine supports on this CPU."""
    if not engine.is_native:
        if requested:
            raise BenchmarkError(
                f"--isa needs the native engine, but the XNOR engine is {engine.label}"
            )
        return ["reference"]
    supported = engine.supported_isas()
    for isa in requested:
        if isa not in supported:
            raise BenchmarkError(
                f"ISA {isa!r} is not supported here (supported: {', '.join(supported)})"
            )
    if requested:
        return list(dict.fromkeys(requested))
    default = engine.active_isa()
    return [default] + (["avx2"] if "avx2" in supported and default != "avx2" else [])


def validate_config(config: BenchConfig) -> None:
    """Raise ``BenchmarkError`` for thread counts, batches or scalings that cannot run."""
    from xnorlab.core.modes import InputScaling

    if not config.threads or any(t < 1 or t > 256 for t in config.threads):
        raise BenchmarkError(f"thread counts must be in 1..256, got {list(config.threads)}")
    if not config.batches or any(b < 1 or b > 1024 for b in config.batches):
        raise BenchmarkError(f"batch sizes must be in 1..1024, got {list(config.batches)}")
    try:
        InputScaling.parse(config.scaling)
    except ValueError as exc:
        raise BenchmarkError(str(exc)) from None


@contextlib.contextmanager
def _threads_and_isa_restored(engine: Engine) -> Iterator[None]:
    torch_threads = torch.get_num_threads()
    engine_threads = engine.get_threads()
    isa = engine.active_isa()
    try:
        yield
    finally:
        torch.set_num_threads(torch_threads)
        if engine_threads is not None:
            engine.set_threads(engine_threads)
        engine.set_isa(isa)


def _set_threads(engine: Engine, threads: int) -> None:
    torch.set_num_threads(threads)
    engine.set_threads(threads)


def _conv_rows(
    engine: Engine, config: BenchConfig, isas: list[str], ceilings: Ceilings, progress: Progress
) -> Iterator[ConvResult]:
    for threads in config.threads:
        _set_threads(engine, threads)
        for batch in config.batches:
            for shape in config.shapes:
                baseline = measure_baselines(shape, batch, config.plan)
                for isa in isas:
                    engine.set_isa(isa)
                    xnor, split = measure_xnor_conv(engine, shape, batch, config.scaling,
                                                    config.plan)  # fmt: skip
                    row = ConvResult(shape, batch, threads, isa, config.scaling, baseline, xnor,
                                     split, ceilings.popcount_for(isa))  # fmt: skip
                    progress(f"conv {shape.name} batch {batch} threads {threads} {isa}: "
                             f"{row.metrics()['speedup_vs_float']:.2f}x float")  # fmt: skip
                    yield row


def _linear_rows(engine: Engine, config: BenchConfig, isas: list[str]) -> Iterator[LinearResult]:
    in_features, out_features = config.linear_features
    for threads in config.threads:
        _set_threads(engine, threads)
        for isa in isas:
            engine.set_isa(isa)
            float_t, bwn_t, split, packed_bytes = measure_bwn_linear(
                engine, in_features, out_features, 1, config.plan
            )
            yield LinearResult(in_features, out_features, 1, threads, isa, float_t, bwn_t, split,
                               in_features * out_features * 4, packed_bytes)  # fmt: skip


def _notes(engine: Engine, machine: MachineInfo, ceilings: Ceilings) -> list[str]:
    notes = [f"XNOR engine: {engine.label}", f"ceilings: {ceilings.source}"]
    if machine.int8_engine is None:
        notes.append("int8: torch has no x86/fbgemm quantized engine here; int8 not measured")
    else:
        notes.append(f"int8: torch.ao quantized Conv2d, engine {machine.int8_engine} "
                     "(torch deprecates quantized tensors since 2.10; still timed)")  # fmt: skip
    if any(value is None for value in machine.malloc_env.values()):
        notes.append("MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_ not set: page faults of "
                     "fresh buffers may be part of the timings")  # fmt: skip
    return notes


def run_benchmark(
    config: BenchConfig,
    progress: Progress | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> BenchReport:
    """Run every measurement of ``config`` and return the report.

    ``progress`` gets one line per finished row; when ``should_cancel()`` turns true, the rows
    measured so far are returned with a note. Thread counts and the ISA are restored after.
    """
    validate_config(config)
    engine = Engine()
    isas = _isa_list(engine, config.isas)
    tell = progress or (lambda _line: None)
    cancelled = should_cancel or (lambda: False)
    ceilings = measure_ceilings(config.quick)
    machine = machine_info(engine)
    report = BenchReport(machine, ceilings, config, notes=_notes(engine, machine, ceilings))
    with _threads_and_isa_restored(engine):
        for row in _conv_rows(engine, config, isas, ceilings, tell):
            report.convs.append(row)
            if cancelled():
                break
        if not cancelled():
            report.linears.extend(_linear_rows(engine, config, isas))
            tell("linear done")
        for threads in config.threads if not cancelled() else ():
            _set_threads(engine, threads)
            engine.set_isa(isas[0])
            result, note = measure_model(engine, config.model, config.model_image_size,
                                         config.scaling, config.plan)  # fmt: skip
            report.models.append(result)
            if note not in report.notes:
                report.notes.append(note)
            tell(f"model {config.model} threads {threads}: "
                 f"{result.metrics()['speedup_vs_float']:.2f}x float")  # fmt: skip
    if cancelled():
        report.notes.append("cancelled: the report holds the rows measured before")
    final_machine = replace(machine, load_end=os.getloadavg())
    return replace(report, machine=final_machine)


# --------------------------------------------------------------------------- issue 3 targets


@dataclass(frozen=True)
class TargetCheck:
    """One target of issue 3: met (True/False) or not measurable here (None), with the figure."""

    name: str
    met: bool | None
    detail: str


def _worst(rows: Sequence[ConvResult], key: str) -> tuple[float, ConvResult] | None:
    values = [(row.metrics()[key], row) for row in rows]
    present = [(float(v), row) for v, row in values if v is not None]
    return min(present, key=lambda pair: pair[0]) if present else None


def _threshold_check(name: str, rows: Sequence[ConvResult], key: str, goal: float) -> TargetCheck:
    worst = _worst(rows, key)
    if worst is None:
        return TargetCheck(name, None, "not measured")
    value, row = worst
    where = f"{row.shape.name} b{row.batch} t{row.threads} {row.isa}"
    return TargetCheck(name, value >= goal, f"worst {value:.2f} (goal {goal}) at {where}")


def _thread_scaling_check(convs: Sequence[ConvResult], isa: str) -> TargetCheck:
    name = "2 threads >= 1.8x 1 thread at batch 8 (XNOR conv)"
    by_key = {(r.shape.name, r.batch, r.threads, r.isa): r.xnor.median_s for r in convs}
    ratios = [
        (by_key[(s, 8, 1, isa)] / t2, s)
        for (s, b, t, i), t2 in by_key.items()
        if b == 8 and t == 2 and i == isa and (s, 8, 1, isa) in by_key
    ]
    if not ratios:
        return TargetCheck(name, None, "needs --threads 1 2 and --batch 8")
    value, shape = min(ratios)
    return TargetCheck(name, value >= 1.8, f"worst {value:.2f} at {shape} ({isa})")


def target_checks(report: BenchReport) -> list[TargetCheck]:
    """Issue 3's targets evaluated on the report (the default ISA is the first one run)."""
    convs = report.convs
    main_isa = convs[0].isa if convs else ""
    main = [r for r in convs if r.isa == main_isa and r.scaling in ("kmap", "none")]
    avx2 = [r for r in convs if r.isa == "avx2"]
    checks = [
        _threshold_check(f"XNOR conv >= 8x torch float32 ({main_isa})", main,
                         "speedup_vs_float", 8.0),
        _threshold_check(f"XNOR conv >= 2.5x torch int8 ({main_isa})", main,
                         "speedup_vs_int8", 2.5),
        _threshold_check(f"popcount phase >= 80% of the ceiling ({main_isa})", main,
                         "popcount_phase_ceiling_fraction", 0.8),
        _threshold_check("AVX2 forced >= 2.5x torch float32", avx2, "speedup_vs_float", 2.5),
        _thread_scaling_check(convs, main_isa),
    ]  # fmt: skip
    linear = [row.metrics()["speedup_vs_float"] or 0.0 for row in report.linears]
    checks.append(TargetCheck("BWN linear >= 4x torch float32", min(linear) >= 4.0 if linear
                              else None, f"worst {min(linear):.2f}" if linear else "not measured"))
    model = [row.metrics()["speedup_vs_float"] or 0.0 for row in report.models]
    checks.append(TargetCheck("whole model >= 3x float PyTorch", min(model) >= 3.0 if model
                              else None, f"worst {min(model):.2f}" if model else "not measured"))
    return checks  # fmt: skip
