"""Statistics shown in the app and the report, on hand-checkable inputs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from xnorlab import binarize_model
from xnorlab.binary.stats import (
    capture_activations,
    compare_layers,
    correlation,
    histogram,
    nonnegative_input_layers,
    relative_error,
    sign_stats,
    weight_stats,
)


def test_weight_stats_by_hand() -> None:
    w = torch.tensor([[1.0, -3.0], [2.0, 2.0]])
    stats = weight_stats(w)
    assert (stats.alpha_mean, stats.alpha_min, stats.alpha_max) == (2.0, 2.0, 2.0)
    assert stats.alpha_std == 0.0
    # W - alpha*B = [[-1, -1], [0, 0]] -> norm sqrt(2); ||W|| = sqrt(18)
    assert stats.approx_error == pytest.approx(math.sqrt(2) / math.sqrt(18))


def test_sign_stats_and_flip_rate() -> None:
    x = torch.tensor([1.0, -1.0, 0.01, 2.0])
    ref = torch.tensor([1.0, 1.0, -0.5, 2.0])
    stats = sign_stats(x, ref)
    assert stats.positive_fraction == 0.75
    assert stats.flip_rate == 0.5
    assert stats.near_zero_fraction == 0.25  # 0.01 <= 0.05 * mean|x| (=0.0503)
    assert math.isnan(sign_stats(x).flip_rate)


def test_relative_error_and_correlation() -> None:
    a = torch.tensor([1.0, 2.0, 3.0])
    assert relative_error(a, a) == 0.0
    assert relative_error(a * 1.1, a) == pytest.approx(0.1)
    assert correlation(2 * a + 1, a) == pytest.approx(1.0)
    assert correlation(-a, a) == pytest.approx(-1.0)


def test_histogram_ignores_non_finite_values() -> None:
    counts, edges = histogram(torch.tensor([0.0, 1.0, float("nan"), float("inf")]), bins=2)
    assert counts.tolist() == [1, 1] and len(edges) == 3


def test_capture_and_compare_on_a_small_net() -> None:
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3, padding=1),
        nn.Flatten(), nn.Linear(4 * 6 * 6, 2),
    ).eval()  # fmt: skip
    x = torch.randn(3, 1, 6, 6)
    io = capture_activations(net, x, ["2"])
    assert io["2"].input.shape == (3, 4, 6, 6)
    binarize_model(net, "paper")
    result = compare_layers(net, x)
    assert result["0"].local_error == 0.0 and result["0"].propagated_error == 0.0
    assert result["2"].sign.flip_rate == 0.0  # first layer is float: same input both runs
    assert result["2"].local_error > 0.1
    assert result["4"].local_error == pytest.approx(0.0, abs=1e-6)  # float layer itself
    assert result["4"].propagated_error > 0.0  # ...but it sees the binarized layer's error
    with pytest.raises(KeyError, match="no layer named 'nope'"):
        capture_activations(net, x, ["nope"])


def test_nonnegative_input_layers_finds_binary_layers_after_a_relu() -> None:
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3),  # input after ReLU: never < 0
        nn.BatchNorm2d(4),
        nn.Conv2d(4, 4, 3),  # after BatchNorm: both signs
    ).eval()
    binarize_model(net, "xnor", warn_first_last=False)
    x = torch.randn(2, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    assert nonnegative_input_layers(net, x) == ["2"]
