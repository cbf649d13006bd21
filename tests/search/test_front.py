"""pareto_front: what dominates what, duplicates, order."""

from __future__ import annotations

from xnorlab.binary.modes import Mode
from xnorlab.measure.front import FrontPoint, pareto_front
from xnorlab.measure.intervals import Accuracy


def point(tag: str, hits: int, ms: float, memory: int) -> FrontPoint:
    modes = {
        "a": Mode.XNOR if "a" in tag else Mode.FLOAT,
        "b": Mode.BWN if "b" in tag else Mode.FLOAT,
    }
    return FrontPoint(modes, Accuracy(hits, 100), ms, (ms * 0.9, ms * 1.1), memory)


def test_dominated_points_leave_and_the_rest_are_ordered_by_latency() -> None:
    floats = point("", 99, 1.0, 1000)
    fast = point("a", 90, 0.5, 600)
    small = point("b", 97, 1.0, 500)
    worse = point("ab", 89, 0.6, 700)  # fast beats it on all three
    front = pareto_front([floats, worse, small, fast])
    assert front == (fast, small, floats)  # by latency, then memory


def test_equal_on_all_three_is_not_domination() -> None:
    one, two = point("a", 95, 0.5, 500), point("b", 95, 0.5, 500)
    assert not one.dominates(two) and not two.dominates(one)
    assert pareto_front([one, two]) == (one, two)


def test_better_on_one_and_equal_on_the_rest_dominates() -> None:
    base = point("a", 95, 0.5, 500)
    assert point("b", 96, 0.5, 500).dominates(base)
    assert point("b", 95, 0.4, 500).dominates(base)
    assert point("b", 95, 0.5, 499).dominates(base)
    assert not base.dominates(base)


def test_a_configuration_counts_once_the_last_measurement_kept() -> None:
    first, again = point("a", 90, 0.5, 600), point("a", 91, 0.55, 600)
    assert pareto_front([first, again]) == (again,)
    assert pareto_front([]) == ()
