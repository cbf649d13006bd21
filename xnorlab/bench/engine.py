"""The XNOR engine under test (native facade or the torch reference) and its profiler split."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from xnorlab.bench.timing import ConvShape

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
    """The XNOR engine under test: ``xnorlab.engine`` when its native facade is there, else
    the core's torch simulation (``xnorlab.binary.binarize``), labelled ``reference``."""

    def __init__(self) -> None:
        import xnorlab.engine as kernels

        self._kernels: Any = kernels
        self.available = all(
            hasattr(kernels, name)
            for name in ("info", "xnor_conv2d", "pack_conv2d_weight", "set_threads")
        )
        self.info: dict[str, Any] = dict(self._kernels.info()) if self.available else {}

    @property
    def label(self) -> str:
        """``native`` / ``reference`` as the facade reports it, or the core simulation."""
        if not self.available:
            return "reference (xnorlab.binary.binarize torch simulation; xnorlab.engine absent)"
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
        """The native pool's size (the reference runs on torch's threads, set by the caller)."""
        if self.is_native:
            self._kernels.set_threads(threads)

    def get_threads(self) -> int | None:
        return int(self._kernels.get_threads()) if self.is_native else None

    def pack_conv(self, weight: Tensor) -> Any:
        return self._kernels.pack_conv2d_weight(weight) if self.available else weight

    def conv(self, x: Tensor, packed: Any, shape: ConvShape, scaling: str) -> Tensor:
        if self.available:
            out: Tensor = self._kernels.xnor_conv2d(
                x, packed, stride=shape.stride, padding=shape.padding, pad_mode="zero",
                scaling=scaling,
            )  # fmt: skip
            return out
        from xnorlab.binary.binarize import xnor_conv2d

        return xnor_conv2d(x, packed, None, shape.stride, shape.padding, scaling=scaling)

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
            float(self._kernels.microkernel_rate(shape.in_channels, shape.out_channels,
                                                 shape.kernel, per_run)) / 1e9
            for _ in range(max(1, runs))
        )  # fmt: skip

    def pack_linear(self, weight: Tensor) -> Any:
        if self.available and hasattr(self._kernels, "pack_linear_weight"):
            return self._kernels.pack_linear_weight(weight)
        from xnorlab.binary.binarize import binarize_weight

        return binarize_weight(weight).detach()  # alpha * sign(W), precomputed once

    def bwn_linear(self, x: Tensor, packed: Any) -> Tensor:
        if self.available and hasattr(self._kernels, "bwn_linear"):
            out: Tensor = self._kernels.bwn_linear(x, packed)
            return out
        return F.linear(x, packed)

    @contextlib.contextmanager
    def profile(self) -> Iterator[list[Any] | None]:
        """``xnorlab.engine.profile()`` when it exists (yields its record list), else None."""
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
