"""Qt-free measurements behind the metrics, prediction and training panels."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from xnorlab.binary.modes import Backend, Mode
from xnorlab.binary.surgery import binarize_model, current_modes, float_mode
from xnorlab.common.errors import XnorlabError
from xnorlab.common.tasks import Cancelled
from xnorlab.measure.evaluate import evaluate
from xnorlab.measure.model_measure import (
    compare_accuracy,
    compare_predictions,
    detached_copy,
    measure_latency,
    model_memory,
    packed_weight_bytes,
)
from xnorlab.train.lab_copy import train_copy


def _net() -> nn.Sequential:
    """conv(1->8, 3x3, bias) -> BN(8) -> conv(8->16, 3x3, no bias) -> linear(16*4*4 -> 10)."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.Hardtanh(), nn.Conv2d(8, 16, 3, bias=False),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 10),
    )  # fmt: skip


def _binarized(modes: str = "paper") -> nn.Sequential:
    model = _net().eval()
    binarize_model(model, modes, warn_first_last=False)
    return model


def _data(n: int = 64) -> TensorDataset:
    generator = torch.Generator().manual_seed(1)
    return TensorDataset(torch.randn(n, 1, 8, 8, generator=generator),
                         torch.randint(0, 10, (n,), generator=generator))  # fmt: skip


def test_packed_bytes_by_hand() -> None:
    # 16 filters of 8*3*3 = 72 bits: 1152 bits = 144 bytes, plus 16 float32 alphas
    assert packed_weight_bytes((16, 8, 3, 3)) == 144 + 64
    assert packed_weight_bytes((10, 3)) == 4 + 40  # 30 bits round up to 4 bytes


def test_model_memory_by_hand() -> None:
    report = model_memory(_binarized("paper"))  # only the middle conv is binarized
    by_name = {layer.name: layer for layer in report.layers}
    assert by_name["0"].float_bytes == by_name["0"].packed_bytes == (72 + 8) * 4
    assert by_name["3"].mode is Mode.XNOR
    assert by_name["3"].float_bytes == 16 * 72 * 4
    assert by_name["3"].packed_bytes == 144 + 64
    assert report.other_bytes == (8 + 8) * 4 + (8 + 8) * 4  # BN weight/bias + running stats
    linear = (256 * 10 + 10) * 4
    assert report.float_bytes == (72 + 8) * 4 + 16 * 72 * 4 + linear + report.other_bytes
    assert report.packed_bytes == report.float_bytes - 16 * 72 * 4 + 144 + 64
    assert model_memory(_binarized("float")).ratio == 1.0


def test_detached_copy_shares_weights_not_configs() -> None:
    model = _binarized("paper")
    model[3].native_cache = object()
    copy = detached_copy(model)
    assert copy[3].weight is model[3].weight
    assert copy[3].native_cache is None and model[3].native_cache is not None
    copy[3].configure(mode="float", backend="native")
    assert model[3].mode is Mode.XNOR and model[3].config.backend is Backend.TORCH


def test_predictions_are_the_softmax_of_both_configurations() -> None:
    model = _binarized("xnor")
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
        compare_predictions(_binarized(), images, [], input_shape=(1, 8, 8))


def test_accuracy_equals_evaluate_and_reuses_the_float_pass() -> None:
    model, data = _binarized("xnor"), _data()
    report = compare_accuracy(model, data, max_samples=40)
    subset = torch.utils.data.Subset(data, range(40))
    assert report.current_top1 == pytest.approx(evaluate(model, subset).top1)
    with float_mode(model):
        assert report.float_top1 == pytest.approx(evaluate(model, subset).top1)
    assert report.samples == 40 and not report.float_reused
    again = compare_accuracy(model, data, max_samples=40, float_top1=0.123)
    assert again.float_top1 == 0.123 and again.float_reused
    assert again.current_top1 == report.current_top1


def test_all_float_model_has_equal_accuracies_and_cancel_raises() -> None:
    model, data = _binarized("float"), _data()
    report = compare_accuracy(model, data)
    assert report.current_top1 == report.float_top1 and report.drop == 0
    with pytest.raises(Cancelled):
        compare_accuracy(_binarized("xnor"), data, batch_size=8, should_cancel=lambda: True)


def test_latency_split_adds_up_and_leaves_the_model_alone() -> None:
    model = _binarized("paper")
    before = {
        name: layer.config for name, layer in model.named_modules() if hasattr(layer, "config")
    }
    fractions: list[float] = []
    report = measure_latency(model, (1, 8, 8), repeats=3, warmup=1, profile_runs=2,
                             progress=lambda f, *_: fractions.append(f))  # fmt: skip
    assert [layer.name for layer in report.layers] == ["0", "3", "5"]
    for layer in report.layers:
        parts = layer.pack_s + layer.popcount_s + layer.scale_s + layer.other_s
        assert parts == pytest.approx(layer.current_s)
        assert layer.float_s > 0
    assert report.float_min_max_s[0] <= report.float_s <= report.float_min_max_s[1]
    assert report.engine
    assert fractions[-1] == pytest.approx(1.0) and fractions == sorted(fractions)
    after = {
        name: layer.config for name, layer in model.named_modules() if hasattr(layer, "config")
    }
    assert after == before


def test_latency_cancel_and_bad_arguments() -> None:
    with pytest.raises(Cancelled):
        measure_latency(_binarized(), (1, 8, 8), should_cancel=lambda: True)
    with pytest.raises(XnorlabError):
        measure_latency(_binarized(), (1, 8, 8), repeats=0)


def test_train_copy_trains_a_copy_only() -> None:
    from xnorlab.data.bundle import DatasetBundle
    from xnorlab.data.images import Preprocessing
    from xnorlab.train.training import TrainConfig

    model = _binarized("paper")
    prep = Preprocessing(channels=1, height=8, width=8, mean=(0.0,), std=(1.0,))
    bundle = DatasetBundle("tiny", _data(48), _data(16), [str(i) for i in range(10)], prep)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = TrainConfig(epochs=1, batch_size=16, shift_px=0.0)
    outcome = train_copy(model, bundle, config)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    trained = outcome.model.state_dict()
    assert any(not torch.equal(before[k], trained[k]) for k in before)
    assert current_modes(outcome.model) == current_modes(model)
    assert outcome.result.card["epochs"] == 1
    with pytest.raises(Cancelled):
        train_copy(model, bundle, config, should_cancel=lambda: True)


def test_latency_time_budget_bounds_the_timed_runs() -> None:
    from xnorlab.measure.model_measure import MIN_REPEATS

    model = _binarized("paper")
    tight = measure_latency(model, (1, 8, 8), repeats=50, warmup=1, profile_runs=1,
                            time_budget_s=1e-9)  # fmt: skip
    assert tight.repeats == MIN_REPEATS
    roomy = measure_latency(model, (1, 8, 8), repeats=4, warmup=1, profile_runs=1,
                            time_budget_s=60.0)  # fmt: skip
    assert roomy.repeats == 4
