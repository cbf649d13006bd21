"""build_report: leaves the caller's model alone, reports progress, cancels, checks its data."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from xnorlab.binary.modes import Mode
from xnorlab.binary.stats import NONNEGATIVE_INPUT_HINT
from xnorlab.binary.surgery import binarize_model, current_modes, float_mode
from xnorlab.common.errors import XnorlabError
from xnorlab.common.tasks import Cancelled
from xnorlab.models.loaded import LoadedModel
from xnorlab.report.build import ReportData, ReportOptions, build_report
from xnorlab.report.render import render

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
    config_acc = _accuracy(model, data)
    totals = report.totals
    assert totals.accuracy_float is not None and totals.accuracy_config is not None
    assert 100 * totals.accuracy_float.value == pytest.approx(float_acc)
    assert 100 * totals.accuracy_config.value == pytest.approx(config_acc)
    assert totals.accuracy_float.n == totals.accuracy_config.n == 40
    assert totals.accuracy_drop is not None
    assert 100 * totals.accuracy_drop.cost == pytest.approx(float_acc - config_acc)
    # conv2 alone in XNOR is exactly the configuration; conv1 alone is a what-if in XNOR.
    conv1, conv2 = report.layers[0], report.layers[1]
    assert conv2.binarize_alone is not None and conv2.restore_alone is not None
    assert 100 * conv2.binarize_alone.candidate.value == pytest.approx(config_acc)
    # conv2 restored alone is the all-float model: its cost is the configuration's
    assert conv2.restore_alone.cost == pytest.approx(totals.accuracy_drop.cost)
    assert conv1.restore_alone is None  # float in the configuration: nothing to restore
    binarize_model(model, {"conv1": "xnor", "conv2": "float"}, warn_first_last=False)
    assert conv1.sensitivity_mode == "xnor"
    assert conv1.binarize_alone is not None
    alone = _accuracy(model, data)
    assert 100 * conv1.binarize_alone.candidate.value == pytest.approx(alone)
    assert 100 * conv1.binarize_alone.cost == pytest.approx(float_acc - alone)
    assert conv1.binarize_alone.verdict in ("exceeds noise", "within noise")


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
    assert report.totals.accuracy_float is None and report.totals.accuracy_drop is None
    assert all(layer.binarize_alone is None for layer in report.layers)
    assert report.header.validation_sample is None
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


class _Attention(torch.nn.Module):
    """linear -> self-attention (its out_proj cannot be binarized) -> ReLU -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Linear(8, 16)
        self.attn = torch.nn.MultiheadAttention(16, 2, batch_first=True)
        self.head = torch.nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x.flatten(1)).unsqueeze(1)
        h, _ = self.attn(h, h, h, need_weights=False)
        return self.head(torch.relu(h.squeeze(1)))


def test_attention_model_reports_its_float_layers_and_never_negative_inputs() -> None:
    torch.manual_seed(0)
    loaded = LoadedModel(spec="test:attention", model=_Attention().eval(), input_shape=(8,),
                         class_names=["a", "b", "c"])  # fmt: skip
    generator = torch.Generator().manual_seed(4)
    x, y = torch.randn(24, 8, generator=generator), torch.randint(0, 3, (24,), generator=generator)
    report = build_report(loaded, "xnor", ReportData("random", x[:8], x, y), options=OPTIONS)
    assert [layer.name for layer in report.layers] == ["embed", "head"]
    skipped = dict(report.header.unbinarizable_layers)
    assert list(skipped) == ["attn.out_proj"] and skipped["attn.out_proj"]
    assert any("attn.out_proj" in note and "stay float" in note for note in report.header.notes)
    head = report.layers[1]
    assert head.input_never_negative is True and report.layers[0].input_never_negative is False
    hint = [note for note in report.header.notes if NONNEGATIVE_INPUT_HINT in note]
    assert len(hint) == 1 and hint[0].startswith("head:")
    assert render(report, "md").count("attn.out_proj") >= 2  # header row and note


class _Untraceable(nn.Module):
    """tiny_net behind a branch on a tensor's value, which torch.fx cannot trace."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.body(x)
        return out if bool(out.sum() > -1e9) else -out


def test_a_model_deploy_cannot_fuse_gets_one_note(tiny_loaded: LoadedModel) -> None:
    x = torch.randn(8, 1, 8, 8)
    options = ReportOptions(sensitivity=False, latency_repeats=1, file_sizes=False)
    plain = build_report(tiny_loaded, "paper", ReportData("random", x), options=options)
    assert not any("deploy" in note for note in plain.header.notes)
    wrapped = dataclasses.replace(tiny_loaded, model=_Untraceable(tiny_loaded.model))
    report = build_report(wrapped, "paper", ReportData("random", x), options=options)
    notes = [note for note in report.header.notes if "deploy" in note]
    assert len(notes) == 1 and "torch.fx could not trace" in notes[0]
