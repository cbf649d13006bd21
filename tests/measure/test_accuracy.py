"""Top-1 float vs current: equal to ``evaluate`` on the same stratified sample, paired, the
float pass reused, cancel."""

from __future__ import annotations

import pytest
import torch
from measure_support import binarized, labelled_data

from xnorlab.binary.modes import Mode
from xnorlab.binary.surgery import binarize_model, float_mode, wrapped_layers
from xnorlab.common.errors import XnorlabError
from xnorlab.common.tasks import Cancelled
from xnorlab.data.sampling import stratified_sample
from xnorlab.measure.accuracy import alone_mode, compare_accuracy, layer_alone_top1, tensor_top1
from xnorlab.measure.evaluate import evaluate


def test_accuracy_equals_evaluate_on_the_stratified_sample_and_pairs_the_items() -> None:
    model, data = binarized("xnor"), labelled_data()
    report = compare_accuracy(model, data, max_samples=40)
    subset, info = stratified_sample(data, 40)
    assert report.sample == info and report.samples == 40
    assert report.current_top1 == pytest.approx(evaluate(model, subset).top1)
    with float_mode(model):
        assert report.float_top1 == pytest.approx(evaluate(model, subset).top1)
    assert not report.float_reused and report.comparison is not None
    paired = report.comparison
    assert paired.cost == pytest.approx(report.drop)
    assert paired.only_baseline - paired.only_candidate == round(40 * report.drop)
    assert "(n=40)" in report.text() and report.to_json()["sample"]["count"] == 40


def test_the_float_pass_is_reused_paired_or_not() -> None:
    model, data = binarized("xnor"), labelled_data()
    report = compare_accuracy(model, data, max_samples=40)
    paired = compare_accuracy(model, data, max_samples=40, float_correct=report.float_correct)
    assert paired.float_reused and paired.comparison == report.comparison
    legacy = compare_accuracy(model, data, max_samples=40, float_top1=0.125)
    assert legacy.float_top1 == 0.125 and legacy.float_reused and legacy.comparison is None
    assert legacy.current_top1 == report.current_top1
    with pytest.raises(XnorlabError, match="cover 3 items"):
        compare_accuracy(model, data, max_samples=40, float_correct=[True] * 3)


def test_all_float_model_has_equal_accuracies_and_cancel_raises() -> None:
    model, data = binarized("float"), labelled_data()
    report = compare_accuracy(model, data)
    assert report.current_top1 == report.float_top1 and report.drop == 0
    with pytest.raises(Cancelled):
        compare_accuracy(binarized("xnor"), data, batch_size=8, should_cancel=lambda: True)


def test_tensor_top1_counts_argmax_hits_as_evaluate_does() -> None:
    model, data = binarized("xnor"), labelled_data(40)
    inputs, labels = data.tensors
    ticks: list[int] = []
    accuracy = tensor_top1(model, inputs, labels, 16, lambda: ticks.append(1))
    assert accuracy.n == 40 and len(ticks) == 3  # batches of 16, 16 and 8
    with torch.no_grad():
        assert accuracy.hits == int((model(inputs).argmax(1) == labels).sum())
    assert accuracy.value == pytest.approx(evaluate(model, data).top1)


def test_one_layer_alone_then_the_configs_come_back() -> None:
    model, data = binarized("paper"), labelled_data(24)
    inputs, labels = data.tensors
    before = {name: layer.config for name, layer in wrapped_layers(model).items()}
    alone = layer_alone_top1(model, "0", alone_mode(Mode.FLOAT), inputs, labels, 8, lambda: None)
    assert {name: layer.config for name, layer in wrapped_layers(model).items()} == before
    binarize_model(model, {"0": "xnor", "3": "float", "5": "float"}, warn_first_last=False)
    assert alone.hits == tensor_top1(model, inputs, labels, 8, lambda: None).hits
    assert alone_mode(Mode.BWN) is Mode.BWN
