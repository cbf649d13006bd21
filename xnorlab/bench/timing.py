"""Benchmark shapes, the quick run plan and the arithmetic of GOP/s and ceiling fractions.

Timing itself (``Timing``, ``RunPlan``, ``time_interleaved``, ``speedup``) is
``xnorlab.measure.timing``.
"""

from __future__ import annotations

from dataclasses import dataclass

from xnorlab.common.errors import XnorlabError
from xnorlab.measure.timing import RunPlan


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


QUICK_PLAN = RunPlan(warmup=1, min_runs=3, max_runs=5, min_total_s=0.0, block=1)


def gops(macs: int, seconds: float) -> float:
    """Giga-operations per second with 2 ops per MAC: ``2 * macs / seconds / 1e9``."""
    if seconds <= 0:
        raise ValueError(f"time must be > 0, got {seconds}")
    return 2.0 * macs / seconds / 1e9


def ceiling_fraction(
    macs: int, seconds: float, ceiling_gmac_per_core: float, threads: int
) -> float:
    """Fraction of the ceiling reached: ``macs / seconds / (ceiling * 1e9 * threads)``."""
    if ceiling_gmac_per_core <= 0 or threads <= 0:
        raise ValueError("ceiling and threads must be > 0")
    return macs / seconds / (ceiling_gmac_per_core * 1e9 * threads)
