"""Intervals against published values and hand computations."""

from __future__ import annotations

import math

import pytest

from xnorlab.measure.intervals import (
    Accuracy,
    PairedDifference,
    mcnemar_p,
    paired_difference_interval,
    wilson_interval,
)


def test_wilson_matches_hand_computation_and_published_values() -> None:
    # Newcombe (1998), table I: 81/263 -> 0.2553 .. 0.3662
    low, high = wilson_interval(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    # 987/1000 by the formula written out
    p, n, z = 0.987, 1000, 1.959963984540054
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    expected = ((centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n))
    assert wilson_interval(987, 1000) == pytest.approx(expected, abs=1e-12)


def test_wilson_edges_stay_inside_zero_one() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and 0.15 < high < 0.17
    low, high = wilson_interval(20, 20)
    assert high == 1.0 and 0.83 < low < 0.85
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


def test_accuracy_text_and_json() -> None:
    acc = Accuracy(hits=987, n=1000)
    assert acc.text() == "98.70 % [97.8, 99.2] (n=1,000)"
    data = acc.to_json()
    assert data["n"] == 1000 and data["hits"] == 987 and data["top1"] == 0.987


def test_mcnemar_exact_two_sided() -> None:
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(5, 5) == 1.0
    # 10 vs 0 disagreements: 2 * 0.5**10
    assert mcnemar_p(10, 0) == pytest.approx(2 / 1024)
    # 7 vs 2: 2 * (C(9,0)+C(9,1)+C(9,2)) / 2**9 = 2 * 46/512
    assert mcnemar_p(7, 2) == pytest.approx(92 / 512)


def test_paired_interval_matches_published_values() -> None:
    # Fagerland, Lydersen & Laake, "Statistical Analysis of Contingency Tables" ch. 8 (Cavo et
    # al. 2012: 59 both, 6 first only, 16 second only, 80 neither): Newcombe square-and-add
    # -0.1186 to -0.0046 for the difference -0.0621
    low, high = paired_difference_interval(59, 6, 16, 80)
    assert (round(low, 4), round(high, 4)) == (-0.1186, -0.0046)
    assert paired_difference_interval(0, 0, 0, 0) == (-1.0, 1.0)
    low, high = paired_difference_interval(50, 0, 0, 50)  # identical scores
    assert low < 0 < high and low == pytest.approx(-high)


def test_paired_difference_from_items_cost_interval_and_verdict() -> None:
    baseline = [True] * 990 + [False] * 10
    candidate = [True] * 978 + [False] * 22  # 12 items lost, none won
    paired = PairedDifference.from_correct(baseline, candidate)
    assert paired.baseline == Accuracy(990, 1000) and paired.candidate == Accuracy(978, 1000)
    assert (paired.only_baseline, paired.only_candidate) == (12, 0)
    assert paired.cost == pytest.approx(0.012)
    low, high = paired.interval
    assert 0 < low < 0.012 < high
    assert paired.p_value == pytest.approx(2 / 4096) and paired.exceeds_noise
    assert paired.text().endswith("(12 vs 0 items): exceeds noise")
    swapped = PairedDifference.from_correct(candidate, baseline)
    assert swapped.cost == pytest.approx(-0.012)
    assert swapped.interval == pytest.approx((-high, -low))
    # 3 lost and 2 won on 1000 items: a difference the items cannot tell from noise
    noisy = PairedDifference.from_correct([True] * 3 + [False] * 2 + [True] * 995,
                                          [False] * 3 + [True] * 2 + [True] * 995)  # fmt: skip
    assert noisy.verdict == "within noise" and noisy.interval[0] < 0 < noisy.interval[1]
    data = noisy.to_json()
    assert data["verdict"] == "within noise" and data["baseline"]["n"] == 1000
    with pytest.raises(ValueError):
        PairedDifference.from_correct([True], [True, False])
