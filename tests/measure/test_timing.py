"""Timing primitives on injected callables: summaries, run plans, interleaving, speedups.

Nothing here measures speed: the counts of calls and samples are what is checked.
"""

from __future__ import annotations

import pytest

from xnorlab.measure.timing import RunPlan, Timing, speedup, time_callable, time_interleaved


def test_speedup_on_hand_values() -> None:
    assert speedup(2.0e-3, 0.25e-3) == pytest.approx(8.0)
    with pytest.raises(ValueError):
        speedup(1.0, 0.0)


def test_timing_summary_and_run_plan() -> None:
    timing = Timing.from_samples([3.0, 1.0, 2.0, 10.0])
    assert (timing.median_s, timing.min_s, timing.max_s, timing.runs) == (2.5, 1.0, 10.0, 4)
    with pytest.raises(ValueError):
        Timing.from_samples([])
    calls: list[int] = []
    plan = RunPlan(warmup=2, min_runs=5, max_runs=7, min_total_s=0.0)
    assert time_callable(lambda: calls.append(1), plan).runs == 5
    assert len(calls) == 2 + 5  # warm-up calls are not timed
    capped = RunPlan(warmup=0, min_runs=1, max_runs=4, min_total_s=1e9)
    assert time_callable(lambda: None, capped).runs == 4


def test_interleaved_timing_calls_round_robin_with_untimed_setup() -> None:
    calls: list[str] = []
    ops = {
        "a": lambda: calls.append("a"),
        "b": (lambda: calls.append("setup-b"), lambda: calls.append("b")),
    }
    plan = RunPlan(warmup=1, min_runs=3, max_runs=10, min_total_s=0.0, block=1)
    timings = time_interleaved(ops, plan)
    # 1 warm-up round, then 3 rounds of one untimed + one timed call per op
    assert calls == ["a", "setup-b", "b"] + ["a", "a", "setup-b", "b", "b"] * 3
    assert {name: t.runs for name, t in timings.items()} == {"a": 3, "b": 3}
    capped = time_interleaved({"a": lambda: None}, RunPlan(0, 1, 6, min_total_s=1e9, block=4))
    assert capped["a"].runs == 6  # blocks of 4 then 2: never more than max_runs samples


def test_interleaved_blocks_of_timed_calls() -> None:
    calls: list[str] = []
    plan = RunPlan(warmup=0, min_runs=5, max_runs=100, min_total_s=0.0, block=3)
    timings = time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                               plan)  # fmt: skip
    assert calls == (["a"] * 4 + ["b"] * 4) * 2  # two rounds of 1 untimed + 3 timed calls
    assert timings["a"].runs == timings["b"].runs == 6
