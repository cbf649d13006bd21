"""Top-k predictions, every layer float vs the current modes."""

from __future__ import annotations

import pytest
import torch
from measure_support import binarized

from xnorlab.binary.modes import Mode
from xnorlab.binary.surgery import current_modes, float_mode
from xnorlab.common.errors import XnorlabError
from xnorlab.measure.predictions import compare_predictions


def test_predictions_are_the_softmax_of_both_configurations() -> None:
    model = binarized("xnor")
    images = torch.randn(3, 1, 8, 8)
    pairs = compare_predictions(model, images, [f"c{i}" for i in range(10)], k=3)
    with torch.no_grad():
        current = torch.softmax(model(images), 1)
        with float_mode(model):
            floating = torch.softmax(model(images), 1)
    for row, pair in enumerate(pairs):
        top = floating[row].topk(3)
        assert pair.float_topk.indices == tuple(top.indices.tolist())
        assert pair.float_topk.probabilities == pytest.approx(top.values.tolist())
        assert pair.float_topk.labels == tuple(f"c{i}" for i in top.indices.tolist())
        assert pair.current_topk.probabilities == pytest.approx(
            current[row].topk(3).values.tolist()
        )
    assert current_modes(model) == dict.fromkeys(current_modes(model), Mode.XNOR)


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (torch.randn(2, 3, 8, 8), "expects"),
        (torch.full((1, 1, 8, 8), float("nan")), "NaN"),
        (torch.zeros(1, 1, 8, 8, dtype=torch.int64), "floating point"),
        (torch.zeros(1, 8, 8), "4-D"),
    ],
)
def test_bad_prediction_inputs_are_clear_errors(images: torch.Tensor, match: str) -> None:
    with pytest.raises(XnorlabError, match=match):
        compare_predictions(binarized(), images, [], input_shape=(1, 8, 8))
