"""Intervals against published values and hand computations."""

from __future__ import annotations

import math

import pytest

from xnorlab.measure.intervals import Accuracy, mcnemar_p, wilson_interval


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
