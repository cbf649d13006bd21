"""Timing primitives on injected callables: summaries, run plans, interleaving, speedups.

Nothing here measures speed: the counts of calls and samples are what is checked.
"""

from __future__ import annotations

import pytest

from xnorlab.measure.timing import (
    RatioEstimate,
    RunPlan,
    Timing,
    confidence_text,
    interleaved_samples,
    median_interval,
    paired_ratios,
    speedup,
    time_callable,
    time_interleaved,
)


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
    # 1 warm-up round, then 3 rounds of one untimed + one timed call per op, every other
    # round in reverse order
    a_block, b_block = ["a", "a"], ["setup-b", "b", "b"]
    rounds = a_block + b_block + b_block + a_block + a_block + b_block
    assert calls == ["a", "setup-b", "b", *rounds]
    assert {name: t.runs for name, t in timings.items()} == {"a": 3, "b": 3}
    capped = time_interleaved({"a": lambda: None}, RunPlan(0, 1, 6, min_total_s=1e9, block=4))
    assert capped["a"].runs == 6  # blocks of 4 then 2: never more than max_runs samples


def test_interleaved_blocks_of_timed_calls() -> None:
    calls: list[str] = []
    plan = RunPlan(warmup=0, min_runs=5, max_runs=100, min_total_s=0.0, block=3)
    timings = time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                               plan)  # fmt: skip
    # two rounds of 1 untimed + 3 timed calls per op, the second in reverse order
    assert calls == ["a"] * 4 + ["b"] * 4 + ["b"] * 4 + ["a"] * 4
    assert timings["a"].runs == timings["b"].runs == 6


def test_interleaved_samples_give_every_op_every_place() -> None:
    calls: list[str] = []
    plan = RunPlan(warmup=0, min_runs=6, max_runs=6, min_total_s=0.0, block=1)
    interleaved_samples({name: (lambda n=name: calls.append(n)) for name in "abc"}, plan)
    rounds = ["".join(calls[i : i + 6 : 2]) for i in range(0, len(calls), 6)]
    assert rounds == ["abc", "cba", "bca", "acb", "cab", "bac"]
    for place in range(3):  # each op opens, sits in the middle and closes twice
        assert sorted(r[place] for r in rounds) == ["a", "a", "b", "b", "c", "c"]


def test_interleaved_samples_alternate_the_opener_and_ratios_divide_them() -> None:
    calls: list[str] = []
    plan = RunPlan(warmup=0, min_runs=3, max_runs=3, min_total_s=0.0, block=1)
    samples = interleaved_samples({"a": lambda: calls.append("a"),
                                   "b": lambda: calls.append("b")}, plan)  # fmt: skip
    assert [len(v) for v in samples.values()] == [3, 3]
    assert "".join(calls) == "aabb" + "bbaa" + "aabb"  # untimed + timed call per block
    assert paired_ratios([2.0, 9.0], [1.0, 3.0]) == [2.0, 3.0]
    assert paired_ratios([1.0, 3.0, 8.0], [1.0, 1.0, 2.0], block=2) == [2.0, 4.0]
    with pytest.raises(ValueError):
        paired_ratios([1.0], [1.0, 2.0])


def test_median_interval_is_the_order_statistics_of_a_binomial() -> None:
    # n = 100: ranks 40 and 61 (the textbook table); n = 6: the extremes (coverage 1 - 2/64)
    assert median_interval([float(v) for v in range(1, 101)]) == (40.0, 61.0)
    assert median_interval([float(v) for v in range(1, 7)]) == (1.0, 6.0)
    assert median_interval([3.0, 1.0, 2.0]) == (1.0, 3.0)  # too few: min and max
    with pytest.raises(ValueError):
        median_interval([])


def test_ratio_estimate_flags_noise_with_its_reason() -> None:
    steady = RatioEstimate.from_samples([2.0] * 40, [1.0] * 40, None)
    assert (steady.median, steady.low, steady.high, steady.rounds) == (2.0, 2.0, 2.0, 40)
    assert not steady.noisy and steady.text() == "2.00x [2.00, 2.00] (40 rounds)"
    spread = [1.0 + 0.02 * i for i in range(40)]  # ratios 1.0 .. 1.78: a wide interval
    wide = RatioEstimate.from_samples(spread, [1.0] * 40, None)
    assert wide.noisy and "wide (bound 10 %)" in (wide.noise_reason or "")
    strict = RatioEstimate.from_samples(spread, [1.0] * 40, None, confidence=0.999)
    assert (strict.noise_reason or "").startswith("99.9 % interval")
    busy = RatioEstimate.from_samples([2.0] * 40, [1.0] * 40, "the machine was busy")
    assert busy.noise_reason == "the machine was busy" and busy.text().endswith("busy")
    few = RatioEstimate.from_samples([2.0] * 3, [1.0] * 3, None)
    assert few.noisy and "only 3 rounds" in (few.noise_reason or "")
    assert busy.to_json()["noisy"] is True and busy.to_json()["interval"] == [2.0, 2.0]
    blocks = RatioEstimate.from_samples([2.0] * 40, [1.0] * 40, None, block=4)
    assert blocks.rounds == 10


def test_a_confidence_level_is_named_as_asked_never_rounded_to_certainty() -> None:
    assert confidence_text(0.95) == "95 %" and confidence_text(0.999) == "99.9 %"
    assert confidence_text(0.9999) == "99.99 %" and confidence_text(0.5) == "50 %"
