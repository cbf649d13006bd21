"""Accuracy as a count with its uncertainty: the one place the lab computes intervals.

A top-1 on n items is a binomial proportion; its 95 % interval is Wilson's score interval,
which stays inside [0, 1] and is honest at 0 %, 100 % and small n (the normal approximation
is not). Two configurations scored on the same items are compared pairwise (McNemar's test):
only the items where they disagree carry information about which one is better.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Z_95 = 1.959963984540054  # two-sided 95 % quantile of the standard normal


def wilson_interval(hits: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of ``hits / n``:

    ``(p + z^2/2n -+ z * sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)`` with ``p = hits / n``;
    ``(0, 1)`` when ``n == 0`` (nothing measured, nothing known).
    """
    if n < 0 or not 0 <= hits <= n:
        raise ValueError(f"need 0 <= hits <= n, got hits={hits}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    scale = 1 + z2 / n
    return max(0.0, (centre - spread) / scale), min(1.0, (centre + spread) / scale)


@dataclass(frozen=True)
class Accuracy:
    """``hits`` correct of ``n`` items, with the 95 % Wilson interval."""

    hits: int
    n: int

    @property
    def value(self) -> float:
        return self.hits / self.n if self.n else math.nan

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.hits, self.n)

    def text(self) -> str:
        """``98.70 % [97.9, 99.2] (n=1,000)``: the form every view prints."""
        if not self.n:
            return "n/a (n=0)"
        low, high = self.interval
        return f"{100 * self.value:.2f} % [{100 * low:.1f}, {100 * high:.1f}] (n={self.n:,})"

    def to_json(self) -> dict[str, float | int | list[float]]:
        low, high = self.interval
        return {"top1": self.value, "hits": self.hits, "n": self.n, "interval95": [low, high]}


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value of a paired comparison.

    ``only_a``: items right under A and wrong under B; ``only_b`` the reverse. Under "no
    difference" each disagreement is a fair coin, so ``p = min(1, 2 * P(X <= min))`` with
    ``X ~ Binomial(only_a + only_b, 1/2)``.
    """
    if only_a < 0 or only_b < 0:
        raise ValueError("disagreement counts must be >= 0")
    total, low = only_a + only_b, min(only_a, only_b)
    if total == 0:
        return 1.0
    tail = sum(math.comb(total, k) for k in range(low + 1)) / 2.0**total
    return min(1.0, 2.0 * tail)


NOISE_P = 0.05  # a paired difference "exceeds noise" when McNemar's exact p is below this


def paired_difference_interval(
    both: int, only_a: int, only_b: int, neither: int, z: float = Z_95
) -> tuple[float, float]:
    """95 % interval of ``p_a - p_b`` for two proportions on the same items (Newcombe 1998,
    method 10: Wilson intervals ``(l_a, u_a)``, ``(l_b, u_b)`` of each, combined with their
    correlation ``phi``)::

        d = p_a - p_b,  low = d - sqrt((p_a-l_a)^2 - 2 phi (p_a-l_a)(u_b-p_b) + (u_b-p_b)^2)
                        high = d + sqrt((u_a-p_a)^2 - 2 phi (u_a-p_a)(p_b-l_b) + (p_b-l_b)^2)

    with ``phi = C / sqrt((both+only_a)(only_b+neither)(both+only_b)(only_a+neither))``,
    ``B = both*neither - only_a*only_b`` and ``C = B - n/2`` if ``B > n/2``, ``B`` if
    ``B < 0``, else 0 (0 when a margin is empty). ``(-1, 1)`` when ``n == 0``.
    """
    n = both + only_a + only_b + neither
    if min(both, only_a, only_b, neither) < 0:
        raise ValueError("counts must be >= 0")
    if n == 0:
        return -1.0, 1.0
    p_a, p_b = (both + only_a) / n, (both + only_b) / n
    (l_a, u_a), (l_b, u_b) = (
        wilson_interval(both + only_a, n, z),
        wilson_interval(both + only_b, n, z),
    )
    margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    cross = both * neither - only_a * only_b
    corrected = cross - n / 2 if cross > n / 2 else (cross if cross < 0 else 0.0)
    phi = corrected / math.sqrt(margins) if margins else 0.0
    below = (p_a - l_a) ** 2 - 2 * phi * (p_a - l_a) * (u_b - p_b) + (u_b - p_b) ** 2
    above = (u_a - p_a) ** 2 - 2 * phi * (u_a - p_a) * (p_b - l_b) + (p_b - l_b) ** 2
    difference = p_a - p_b
    return max(-1.0, difference - math.sqrt(max(0.0, below))), min(
        1.0, difference + math.sqrt(max(0.0, above))
    )


@dataclass(frozen=True)
class PairedDifference:
    """Two configurations scored on the same items: a ``baseline`` and a ``candidate``.

    ``cost = baseline - candidate`` (a fraction; positive: the candidate gets fewer items
    right), with the paired 95 % interval (``paired_difference_interval``) and McNemar's exact
    p-value over the items where the two disagree; the cost "exceeds noise" when
    ``p < NOISE_P``, else it is "within noise".
    """

    baseline: Accuracy
    candidate: Accuracy
    only_baseline: int  # items right under the baseline only
    only_candidate: int  # items right under the candidate only

    @classmethod
    def from_correct(cls, baseline: Sequence[bool], candidate: Sequence[bool]) -> PairedDifference:
        """From the per-item correctness of both configurations (same items, same order)."""
        if len(baseline) != len(candidate):
            raise ValueError(f"paired scores differ in length: {len(baseline)} vs {len(candidate)}")
        pairs = list(zip((bool(b) for b in baseline), (bool(c) for c in candidate), strict=True))
        both = sum(1 for b, c in pairs if b and c)
        only_baseline = sum(1 for b, c in pairs if b and not c)
        only_candidate = sum(1 for b, c in pairs if c and not b)
        n = len(pairs)
        return cls(Accuracy(both + only_baseline, n), Accuracy(both + only_candidate, n),
                   only_baseline, only_candidate)  # fmt: skip

    @property
    def n(self) -> int:
        return self.baseline.n

    @property
    def cost(self) -> float:
        """``baseline.value - candidate.value`` (fraction)."""
        return (self.only_baseline - self.only_candidate) / self.n if self.n else math.nan

    @property
    def interval(self) -> tuple[float, float]:
        both = self.baseline.hits - self.only_baseline
        neither = self.n - both - self.only_baseline - self.only_candidate
        return paired_difference_interval(both, self.only_baseline, self.only_candidate, neither)

    @property
    def p_value(self) -> float:
        return mcnemar_p(self.only_baseline, self.only_candidate)

    @property
    def exceeds_noise(self) -> bool:
        return self.p_value < NOISE_P

    @property
    def verdict(self) -> str:
        return "exceeds noise" if self.exceeds_noise else "within noise"

    def text(self) -> str:
        """``+1.20 pts [+0.55, +1.98], p=0.0005 (12 vs 0 items): exceeds noise``."""
        if not self.n:
            return "n/a (n=0)"
        low, high = self.interval
        return (
            f"{100 * self.cost:+.2f} pts [{100 * low:+.2f}, {100 * high:+.2f}], "
            f"p={self.p_value:.2g} ({self.only_baseline} vs {self.only_candidate} items): "
            f"{self.verdict}"
        )

    def to_json(self) -> dict[str, Any]:
        low, high = self.interval
        return {
            "baseline": self.baseline.to_json(),
            "candidate": self.candidate.to_json(),
            "cost": self.cost,
            "interval95": [low, high],
            "only_baseline": self.only_baseline,
            "only_candidate": self.only_candidate,
            "p_value": self.p_value,
            "verdict": self.verdict,
        }
