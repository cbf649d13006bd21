"""build_report: leaves the caller's model alone, reports progress, cancels, checks its data."""

from __future__ import annotations

import pytest
import torch

from xnorlab.binary.modes import Mode
from xnorlab.binary.surgery import binarize_model, current_modes, float_mode
from xnorlab.common.errors import XnorlabError
from xnorlab.common.tasks import Cancelled
from xnorlab.models.loaded import LoadedModel
from xnorlab.report.build import ReportData, ReportOptions, build_report

OPTIONS = ReportOptions(latency_repeats=2, file_sizes=False, batch_size=16)


def _data(n_val: int = 40) -> ReportData:
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(n_val, 1, 8, 8, generator=generator)
    y = torch.randint(0, 5, (n_val,), generator=generator)
    return ReportData("random", x[:8], x, y)


def _accuracy(model: torch.nn.Module, data: ReportData) -> float:
    assert data.val_inputs is not None and data.val_labels is not None
    with torch.no_grad():
        predicted = model(data.val_inputs).argmax(dim=1)
    return 100.0 * int((predicted == data.val_labels).sum()) / len(predicted)


def test_model_is_left_untouched(tiny_loaded: LoadedModel) -> None:
    model = tiny_loaded.model
    binarize_model(model, {"conv2": "bwn"}, warn_first_last=False)
    before_modes = current_modes(model)
    before_state = {k: v.clone() for k, v in model.state_dict().items()}
    build_report(tiny_loaded, "xnor", _data(), options=OPTIONS)
    assert current_modes(model) == before_modes
    assert all(torch.equal(v, before_state[k]) for k, v in model.state_dict().items())
    assert not model.training


def test_accuracy_and_sensitivity_equal_direct_evaluation(tiny_loaded: LoadedModel) -> None:
    data = _data()
    report = build_report(tiny_loaded, {"conv2": "xnor"}, data, options=OPTIONS)
    model = tiny_loaded.model
    binarize_model(model, {"conv2": "xnor"}, warn_first_last=False)
    with float_mode(model):
        float_acc = _accuracy(model, data)
    assert report.totals.accuracy_float == pytest.approx(float_acc)
    assert report.totals.accuracy_config == pytest.approx(_accuracy(model, data))
    # conv2 alone in XNOR is exactly the configuration; conv1 alone is a what-if in XNOR.
    assert report.layers[1].sensitivity_accuracy == pytest.approx(_accuracy(model, data))
    binarize_model(model, {"conv1": "xnor", "conv2": "float"}, warn_first_last=False)
    assert report.layers[0].sensitivity_mode == "xnor"
    assert report.layers[0].sensitivity_accuracy == pytest.approx(_accuracy(model, data))
    drop = float_acc - report.layers[0].sensitivity_accuracy
    assert report.layers[0].sensitivity_drop == pytest.approx(drop)


def test_progress_reaches_one_and_cancel_stops(tiny_loaded: LoadedModel) -> None:
    seen: list[float] = []
    build_report(tiny_loaded, "paper", _data(), options=OPTIONS,
                 progress=lambda f, _m: seen.append(f))  # fmt: skip
    assert seen == sorted(seen) and seen[-1] == 1.0
    calls = iter(range(1000))
    with pytest.raises(Cancelled):
        build_report(tiny_loaded, "paper", _data(), options=OPTIONS,
                     should_cancel=lambda: next(calls) >= 5)  # fmt: skip


def test_no_validation_data_means_no_accuracy(tiny_loaded: LoadedModel) -> None:
    data = ReportData("random", torch.randn(4, 1, 8, 8))
    options = ReportOptions(latency=False, file_sizes=False)
    report = build_report(tiny_loaded, "xnor", data, options=options)
    assert report.totals.accuracy_float is None
    assert all(layer.sensitivity_accuracy is None for layer in report.layers)
    assert any("first or last" in note for note in report.header.notes)
    assert report.layers[0].mode == str(Mode.XNOR)


@pytest.mark.parametrize(
    "data",
    [
        ReportData("bad", torch.randn(4, 3, 8, 8)),  # wrong channels
        ReportData("bad", torch.full((4, 1, 8, 8), float("nan"))),
        ReportData("bad", torch.zeros(4, 1, 8, 8, dtype=torch.int64)),
        ReportData("bad", torch.randn(0, 1, 8, 8)),
        ReportData("bad", torch.randn(4, 1, 8, 8), torch.randn(3, 1, 8, 8), torch.zeros(4)),
        ReportData("bad", torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8), torch.zeros(4)),
    ],
)
def test_bad_data_is_a_clear_error(tiny_loaded: LoadedModel, data: ReportData) -> None:
    with pytest.raises(XnorlabError):
        build_report(tiny_loaded, "paper", data, options=OPTIONS)


def test_native_layers_get_the_engine_split(tiny_loaded: LoadedModel) -> None:
    from xnorlab import engine as kernels

    data = ReportData("random", torch.randn(4, 1, 8, 8))
    options = ReportOptions(sensitivity=False, file_sizes=False, latency_repeats=3)
    report = build_report(tiny_loaded, {"conv2": "xnor"}, data, options=options)
    conv1, conv2, fc = report.layers
    assert conv1.kernel_pack_ms is None and fc.kernel_popcount_ms is None  # float: no kernel
    native = kernels.info()["backend"] == "native"
    assert (conv2.kernel_popcount_ms is not None) == native
    if native:
        assert conv2.latency_config_ms is not None
        parts = conv2.kernel_pack_ms + conv2.kernel_popcount_ms + conv2.kernel_scale_ms
        assert 0 <= parts <= conv2.latency_config_ms


@pytest.mark.parametrize(
    "options",
    [ReportOptions(engine="gpu"), ReportOptions(latency_repeats=0), ReportOptions(batch_size=0),
     ReportOptions(histogram_bins=0)],
)  # fmt: skip
def test_bad_options_are_a_clear_error(tiny_loaded: LoadedModel, options: ReportOptions) -> None:
    with pytest.raises(XnorlabError):
        build_report(
            tiny_loaded, "paper", ReportData("x", torch.randn(2, 1, 8, 8)), options=options
        )


def test_per_layer_settings_survive_and_engine_option_decides(tiny_loaded: LoadedModel) -> None:
    from xnorlab.binary.stats import compare_layers

    model = tiny_loaded.model
    binarize_model(model, {"conv2": "xnor"}, warn_first_last=False)
    model.conv2.configure(scaling="none", backend="native")  # e.g. set in the GUI
    data = ReportData("random", torch.randn(4, 1, 8, 8))
    options = ReportOptions(sensitivity=False, file_sizes=False, engine="torch")
    report = build_report(tiny_loaded, None, data, options=options)
    assert report.layers[1].mode == "xnor"
    assert report.layers[1].kernel_popcount_ms is None  # torch engine: no native call
    assert model.conv2.config.scaling == "none" and model.conv2.config.backend == "native"
    model.conv2.configure(backend="torch")
    none_error = compare_layers(model, data.calibration)["conv2"].local_error
    model.conv2.configure(scaling="kmap")
    kmap_error = compare_layers(model, data.calibration)["conv2"].local_error
    assert report.layers[1].local_error == pytest.approx(none_error, rel=1e-5)
    assert abs(none_error - kmap_error) > 1e-2  # the check can tell the two apart
