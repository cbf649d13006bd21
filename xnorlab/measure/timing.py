"""Wall-clock timing of callables: samples summarised as median / min / max, run plans, and
interleaved timing of several operations (A/B comparisons on a shared machine).

``Timing`` is the one summary of a timed operation in xnorlab: the metrics panel's latency, the
report's latency and every benchmark row are medians of such samples.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

Op = Callable[[], object]


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
    """How long to time each operation: warm-up calls, then runs until both minimums are met.

    ``block``: with ``time_interleaved``, each op runs one untimed call then ``block`` timed
    calls in a row per round, so its caches and branch predictors are in the steady state of
    back-to-back calls (as in a layer chain or a plain timing loop), not cooled by the other ops.
    """

    warmup: int = 3
    min_runs: int = 15
    max_runs: int = 300
    min_total_s: float = 0.4
    block: int = 4


def time_callable(fn: Op, plan: RunPlan) -> Timing:
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


def time_interleaved(ops: Mapping[str, Op | tuple[Op, Op]], plan: RunPlan) -> dict[str, Timing]:
    """Time several operations in interleaved blocks: each round runs every op in turn, one
    untimed call then ``plan.block`` timed calls.

    A change of machine load (another process starting) then hits every op alike, so their
    ratios stay meaningful on a shared machine, while each timed call still follows a call of
    the same op (warm caches). An op may be ``(setup, op)``: ``setup`` runs untimed before each
    block (e.g. switching the engine's ISA). ``plan.warmup`` untimed rounds come first; then
    rounds continue until every op has ``plan.min_runs`` samples and ``plan.min_total_s`` of
    timed calls on average, stopping at ``plan.max_runs`` samples.
    """
    steps = {name: op if isinstance(op, tuple) else (_no_setup, op) for name, op in ops.items()}
    samples: dict[str, list[float]] = {name: [] for name in steps}
    block = max(1, plan.block)
    for _ in range(plan.warmup):
        for setup, op in steps.values():
            setup()
            op()
    spent_s, runs, budget_s = 0.0, 0, plan.min_total_s * len(steps)
    while runs < plan.max_runs and (runs < plan.min_runs or spent_s < budget_s):
        timed = min(block, plan.max_runs - runs)
        for name, (setup, op) in steps.items():
            setup()
            op()
            for _ in range(timed):
                start = time.perf_counter()
                op()
                elapsed = time.perf_counter() - start
                samples[name].append(elapsed)
                spent_s += elapsed
        runs += timed
    return {name: Timing.from_samples(values) for name, values in samples.items()}


def _no_setup() -> None:
    return None
