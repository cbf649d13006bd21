"""The XNOR engine under test (native facade or its torch reference) and its profiler split."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from xnorlab import engine as kernels
from xnorlab.bench.timing import ConvShape
from xnorlab.measure.machine import EngineInfo, engine_info

# --------------------------------------------------------------------------- the engine


@dataclass(frozen=True)
class SplitTiming:
    """Where the XNOR time goes (medians over profiled calls, seconds).

    ``pack_s``, ``popcount_s``, ``scale_s`` and ``other_s`` are the engine's own phases from
    ``xnorlab.engine.profile()`` (``other_s``: validation, allocation and the call inside the
    facade); ``call_s`` = wall time minus the facade's ``total_s`` (the caller's side).
    Profiled calls are timed apart from the plain timing runs, so compare the parts with their
    own sum (``parts_s``), not with the plain median.
    """

    pack_s: float
    popcount_s: float
    scale_s: float
    other_s: float
    call_s: float

    @property
    def parts_s(self) -> float:
        """Sum of the parts (the denominator of a percentage split)."""
        return self.pack_s + self.popcount_s + self.scale_s + self.other_s + self.call_s


class Engine:
    """The XNOR engine under test, ``xnorlab.engine``: its native facade, or its torch
    reference when the native module is not in use (``label`` and the ISA say ``reference``)."""

    def __init__(self) -> None:
        self.state: EngineInfo = engine_info()
        self.info: dict[str, Any] = dict(self.state.details)

    @property
    def label(self) -> str:
        """``native`` / ``reference`` as the facade reports it."""
        return self.state.backend

    @property
    def is_native(self) -> bool:
        return self.state.is_native

    def supported_isas(self) -> list[str]:
        return list(self.state.supported_isas) if self.is_native else []

    def active_isa(self) -> str:
        return engine_info().isa if self.is_native else "reference"

    def set_isa(self, isa: str) -> None:
        if self.is_native:
            kernels.set_isa(isa)

    def set_threads(self, threads: int) -> None:
        """The native pool's size (the reference runs on torch's threads, set by the caller)."""
        if self.is_native:
            kernels.set_threads(threads)

    def get_threads(self) -> int | None:
        return int(kernels.get_threads()) if self.is_native else None

    def pack_conv(self, weight: Tensor) -> Any:
        return kernels.pack_conv2d_weight(weight)

    def conv(self, x: Tensor, packed: Any, shape: ConvShape, scaling: str) -> Tensor:
        return kernels.xnor_conv2d(
            x, packed, stride=shape.stride, padding=shape.padding, pad_mode="zero",
            scaling=scaling,
        )  # fmt: skip

    def microkernel_gmac(
        self, isa: str, shape: ConvShape, seconds: float, runs: int = 1
    ) -> float | None:
        """G binary MAC/s of ``isa``'s micro-kernel alone (the bare popcount loop with its
        fused output transform, one thread, L1-resident data) for ``shape``: the best of
        ``runs`` runs of ``seconds / runs`` each, as the ceilings are measured (a run that a
        neighbour on the shared host slowed does not count); None without the native engine."""
        if not self.is_native:
            return None
        self.set_isa(isa)
        per_run = seconds / max(1, runs)
        return max(
            float(kernels.microkernel_rate(shape.in_channels, shape.out_channels, shape.kernel,
                                           per_run)) / 1e9
            for _ in range(max(1, runs))
        )  # fmt: skip

    def pack_linear(self, weight: Tensor) -> Any:
        return kernels.pack_linear_weight(weight)

    def bwn_linear(self, x: Tensor, packed: Any) -> Tensor:
        return kernels.bwn_linear(x, packed)

    def profile(self) -> AbstractContextManager[list[Any]]:
        """``xnorlab.engine.profile()``: a block collecting one record per native call."""
        return kernels.profile()


def profile_split(engine: Engine, fn: Callable[[], object], runs: int) -> SplitTiming | None:
    """Run ``fn`` ``runs`` times under the engine's profiler; median split per call.

    Returns None when ``fn`` made no native call. A call that makes several native calls (a
    whole model) has its records summed.
    """
    walls: list[float] = []
    per_call: list[list[Any]] = []
    with engine.profile() as records:
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
