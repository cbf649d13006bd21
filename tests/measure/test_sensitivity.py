"""Sensitivity both ways on the same items: binarize alone and restore alone, signs, configs
restored, the app's entry point on a stratified sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from measure_support import binarized, labelled_data

from xnorlab.binary.modes import Backend, Mode
from xnorlab.binary.surgery import binarize_model, layer_configs, wrapped_layers
from xnorlab.measure.accuracy import tensor_correct
from xnorlab.measure.sensitivity import (
    layer_sensitivity,
    measure_sensitivity,
    sensitivity_passes,
)


def _acc(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    return tensor_correct(model, x, y, 16, lambda: None)


def test_both_costs_are_the_defined_differences_on_the_same_items() -> None:
    model, data = binarized("paper"), labelled_data(48)  # layers 0 float, 3 xnor, 5 float
    x, y = data.tensors
    before = {name: layer.config for name, layer in wrapped_layers(model).items()}
    ticks: list[int] = []
    result = layer_sensitivity(model, x, y, 16, lambda: ticks.append(1))
    assert {name: layer.config for name, layer in wrapped_layers(model).items()} == before
    assert len(ticks) == 3 * sensitivity_passes(model)  # 3 batches per pass
    configured = _acc(model, x, y)
    layers = {layer.name: layer for layer in result.layers}
    assert set(layers) == {"0", "3", "5"}
    # binarize alone: all float minus only "3" binarized
    floats = {
        n: layer.config.updated(mode=Mode.FLOAT) for n, layer in wrapped_layers(model).items()
    }
    with layer_configs(model, floats):
        all_float = _acc(model, x, y)
    only3 = {**floats, "3": floats["3"].updated(mode=Mode.XNOR)}
    with layer_configs(model, only3):
        alone = _acc(model, x, y)
    three = layers["3"]
    assert three.binarize_alone.cost == pytest.approx(all_float.mean() - alone.mean())
    # restore alone: "3" float with the rest configured, minus the configured model
    assert three.restore_alone is not None
    restored = three.restore_alone.baseline.value
    assert three.restore_alone.cost == pytest.approx(restored - configured.mean())
    assert three.restore_alone.candidate.hits == int(configured.sum())
    # a layer float in the configuration is binarized alone as XNOR and has nothing to restore
    assert layers["0"].alone_mode is Mode.XNOR and layers["0"].restore_alone is None
    assert result.configured.cost == pytest.approx(all_float.mean() - configured.mean())
    assert "restore alone - (float here)" in layers["0"].text()
    assert result.to_json()["layers"][1]["restore_alone"]["candidate"]["n"] == 48


def test_a_positive_cost_means_binarizing_hurts_both_ways() -> None:
    """A model whose only binarized layer destroys its answers: both costs are positive."""
    model, data = binarized("float"), labelled_data(64)
    x, _ = data.tensors
    with torch.no_grad():
        y = model(x).argmax(1)  # labels = the float model's answers: all float is 100 %
    binarize_model(model, {"3": "xnor"}, warn_first_last=False)
    result = layer_sensitivity(model, x, y, 64, lambda: None)
    three = next(layer for layer in result.layers if layer.name == "3")
    assert three.restore_alone is not None
    assert three.binarize_alone.cost > 0 and three.restore_alone.cost > 0
    assert three.binarize_alone.cost == pytest.approx(three.restore_alone.cost)  # one layer


def test_measure_sensitivity_on_a_stratified_sample_leaves_the_model_alone() -> None:
    model, data = binarized("paper"), labelled_data(64)
    before = {name: layer.config for name, layer in wrapped_layers(model).items()}
    fractions: list[float] = []
    report = measure_sensitivity(model, data, max_samples=30, backend=Backend.TORCH,
                                 progress=lambda f, *_: fractions.append(f))  # fmt: skip
    assert report.sample is not None and report.sample.count == 30
    assert report.configured.n == 30 and fractions[-1] == 1.0
    assert {name: layer.config for name, layer in wrapped_layers(model).items()} == before
    assert "sample: 30 items" in report.text()
