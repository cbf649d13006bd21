"""Wall-clock timing of callables: samples summarised as median / min / max, run plans, and
interleaved timing of several operations (A/B comparisons on a shared machine).

``Timing`` is the one summary of a timed operation in xnorlab: the metrics panel's latency, the
report's latency and every benchmark row are medians of such samples; ``RatioEstimate`` is the
one A/B ratio (a speed-up) with its interval and noise flag.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
    """``interleaved_samples`` summarised per op (median / min / max)."""
    samples = interleaved_samples(ops, plan)
    return {name: Timing.from_samples(values) for name, values in samples.items()}


def interleaved_samples(
    ops: Mapping[str, Op | tuple[Op, Op]], plan: RunPlan
) -> dict[str, list[float]]:
    """Time several operations in interleaved blocks: each round runs every op in turn, one
    untimed call then ``plan.block`` timed calls; the samples of every op, in time order.

    A change of machine load (another process starting) then hits every op alike, so their
    ratios stay meaningful on a shared machine, while each timed call still follows a call of
    the same op (warm caches). The order changes from round to round (``_round_orders``) so
    that every op takes every place in a round equally often: an op's place biases it (the op
    opening a round runs a little slower, and with three ops one always in the middle reads
    differently from its identical twin; benchmarks/RESULTS.md). The ``i``-th samples of two
    ops were taken in the same round
    (``paired_ratios``). An op may be ``(setup, op)``: ``setup`` runs untimed before each
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
    orders = _round_orders(list(steps.items()))  # made once: no allocation between rounds
    rounds = 0
    while runs < plan.max_runs and (runs < plan.min_runs or spent_s < budget_s):
        timed = min(block, plan.max_runs - runs)
        for name, (setup, op) in orders[rounds % len(orders)]:
            setup()
            op()
            for _ in range(timed):
                start = time.perf_counter()
                op()
                elapsed = time.perf_counter() - start
                samples[name].append(elapsed)
                spent_s += elapsed
        runs += timed
        rounds += 1
    return samples


def _round_orders(order: list[Any]) -> list[list[Any]]:
    """The cycle of round orders: two ops alternate (A B, B A); more come in pairs of an order
    and its reverse, each pair rotated by one (A B C, C B A, B C A, A C B, C A B, B A C), so
    each op opens, closes and sits between the others equally often."""
    if len(order) <= 2:
        return [order, order[::-1]]
    cycle = []
    for first in range(len(order)):
        rotated = order[first:] + order[:first]
        cycle += [rotated, rotated[::-1]]
    return cycle


def paired_ratios(
    numerator_s: Sequence[float], denominator_s: Sequence[float], block: int = 1
) -> list[float]:
    """One ratio per round: ``sum(numerator block) / sum(denominator block)`` over consecutive
    chunks of ``block`` samples (``interleaved_samples`` takes ``block`` of each op per round).

    The calls of one block run back to back and share the machine's state, so one ratio per
    round, not per call, keeps the ratios close to independent (an interval from correlated
    ratios would be too narrow).
    """
    if len(numerator_s) != len(denominator_s):
        raise ValueError("paired samples differ in length")
    step = max(1, block)
    ratios = []
    for start in range(0, len(numerator_s), step):
        top, bottom = (
            sum(numerator_s[start : start + step]),
            sum(denominator_s[start : start + step]),
        )
        if bottom > 0:
            ratios.append(top / bottom)
    return ratios


# A ratio interval wider than this share of its median is flagged noisy: a 10 % wide interval
# cannot tell a 1.05x speed-up from none.
NOISY_RELATIVE_WIDTH = 0.10
MIN_ROUNDS = 6  # the fewest ratios whose order statistics give a 95 % interval of the median


def confidence_text(confidence: float) -> str:
    """``95 %``, ``99.9 %``: a level named as asked; rounding 0.999 to "100 %" would claim
    certainty no interval has."""
    return f"{100 * confidence:.4g} %"


def median_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free interval of the median: order statistics ``(v_(k), v_(n+1-k))``.

    ``k`` is the largest rank with ``P(Binomial(n, 1/2) <= k - 1) <= (1 - confidence) / 2``,
    so the interval covers the true median with at least ``confidence`` whatever the
    distribution; with fewer than ``MIN_ROUNDS`` values no such ``k`` exists and the interval
    is ``(min, max)``.
    """
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    n, tail = len(ordered), (1 - confidence) / 2
    k, cumulative = 0, 0.0
    while k < n:
        cumulative += math.comb(n, k) / 2.0**n  # P(X <= k)
        if cumulative > tail:
            break
        k += 1
    if k == 0:
        return ordered[0], ordered[-1]
    return ordered[k - 1], ordered[n - k]


@dataclass(frozen=True)
class RatioEstimate:
    """How many times slower ``numerator`` runs than ``denominator`` (a speed-up when the
    numerator is the baseline), from interleaved rounds of runs.

    ``median`` is the median of the per-round ratios (``paired_ratios``); ``(low, high)`` its
    distribution-free interval at ``confidence`` (``median_interval``: order statistics of the
    ratios, no bootstrap). ``noisy`` says the figure should not be trusted, ``noise_reason``
    why: the interval is wider than ``NOISY_RELATIVE_WIDTH`` of the median, too few rounds, or
    the machine was busy.
    """

    median: float
    low: float
    high: float
    rounds: int
    noise_reason: str | None = None
    confidence: float = 0.95

    @classmethod
    def from_samples(
        cls, numerator_s: Sequence[float], denominator_s: Sequence[float], load: str | None,
        *, block: int = 1, confidence: float = 0.95,
    ) -> RatioEstimate:  # fmt: skip
        """From paired samples (``interleaved_samples`` with ``block`` calls per op and
        round) and the machine's load note."""
        ratios = paired_ratios(numerator_s, denominator_s, block)
        if not ratios:
            raise ValueError("no timing pairs")
        low, high = median_interval(ratios, confidence)
        median = float(statistics.median(ratios))
        reasons = []
        if len(ratios) < MIN_ROUNDS:
            reasons.append(f"only {len(ratios)} rounds (need {MIN_ROUNDS} for an interval)")
        elif (high - low) > NOISY_RELATIVE_WIDTH * median:
            reasons.append(
                f"{confidence_text(confidence)} interval {100 * (high - low) / median:.0f} % of the "
                f"median wide (bound {100 * NOISY_RELATIVE_WIDTH:.0f} %)"
            )
        if load:
            reasons.append(load)
        return cls(median, low, high, len(ratios), "; ".join(reasons) or None, confidence)

    @property
    def noisy(self) -> bool:
        return self.noise_reason is not None

    def text(self, reason: bool = True) -> str:
        """``4.12x [3.98, 4.30] (40 rounds)``, with ``, NOISY: reason`` when noisy (``, NOISY``
        alone when ``reason`` is false)."""
        head = f"{self.median:.2f}x [{self.low:.2f}, {self.high:.2f}] ({self.rounds} rounds)"
        if not self.noise_reason:
            return head
        return head + (f", NOISY: {self.noise_reason}" if reason else ", NOISY")

    def to_json(self) -> dict[str, Any]:
        return {
            "median": self.median,
            "interval": [self.low, self.high],
            "confidence": self.confidence,
            "rounds": self.rounds,
            "method": "median of per-round ratios, order-statistic interval",
            "noisy": self.noisy,
            "noise_reason": self.noise_reason,
        }


def _no_setup() -> None:
    return None
