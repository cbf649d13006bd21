"""Accuracy as a count with its uncertainty: the one place the lab computes intervals.

A top-1 on n items is a binomial proportion; its 95 % interval is Wilson's score interval,
which stays inside [0, 1] and is honest at 0 %, 100 % and small n (the normal approximation
is not). Two configurations scored on the same items are compared pairwise (McNemar's test):
only the items where they disagree carry information about which one is better.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
