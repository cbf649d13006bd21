"""Timings, run plans, conv shapes and the arithmetic of speedups, GOP/s and ceilings."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from xnorlab.core.errors import XnorlabError


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


def ceiling_fraction(
    macs: int, seconds: float, ceiling_gmac_per_core: float, threads: int
) -> float:
    """Fraction of the ceiling reached: ``macs / seconds / (ceiling * 1e9 * threads)``."""
    if ceiling_gmac_per_core <= 0 or threads <= 0:
        raise ValueError("ceiling and threads must be > 0")
    return macs / seconds / (ceiling_gmac_per_core * 1e9 * threads)


Op = Callable[[], object]


def time_interleaved(ops: Mapping[str, Op | tuple[Op, Op]], plan: RunPlan) -> dict[str, Timing]:
    """Time several operations round-robin: each round calls every op once, in order.

    A change of machine load (another process starting) then hits every op alike, so their
    ratios stay meaningful on a shared machine. An op may be ``(setup, op)``: ``setup`` runs
    untimed before each call (e.g. switching the engine's ISA). Rounds continue until
    ``plan.min_runs`` rounds and ``plan.min_total_s`` per op on average, at most
    ``plan.max_runs`` rounds; ``plan.warmup`` untimed rounds come first.
    """
    steps = {name: op if isinstance(op, tuple) else (_no_setup, op) for name, op in ops.items()}
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(plan.warmup):
        for setup, op in steps.values():
            setup()
            op()
    spent_s, rounds, budget_s = 0.0, 0, plan.min_total_s * len(steps)
    while rounds < plan.max_runs and (rounds < plan.min_runs or spent_s < budget_s):
        for name, (setup, op) in steps.items():
            setup()
            start = time.perf_counter()
            op()
            elapsed = time.perf_counter() - start
            samples[name].append(elapsed)
            spent_s += elapsed
        rounds += 1
    return {name: Timing.from_samples(values) for name, values in samples.items()}


def _no_setup() -> None:
    return None
