"""``xresnet18`` and ``xresnet18-small`` as model specs (CLI, app, reports), and why they show
no "input never negative" warning: every binary conv sees BatchNorm -> Hardtanh outputs."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from xnorlab.binary.modes import Mode
from xnorlab.binary.stats import NONNEGATIVE_INPUT_HINT
from xnorlab.binary.surgery import binarize_model, current_modes
from xnorlab.data.datasets import load_dataset
from xnorlab.lab.layerview import compute_table_stats
from xnorlab.measure.accuracy import sample_tensors
from xnorlab.models.spec import load_model_spec
from xnorlab.models.xnor_file import export_xnor, load_xnor
from xnorlab.models.xresnet import SMALL_WIDTH
from xnorlab.report.build import build_report
from xnorlab.report.model import ReportData, ReportOptions


def mnist_sample(count: int = 40) -> torch.Tensor:
    loaded = load_model_spec("xresnet18-small")
    bundle = load_dataset("mnist5k", loaded.preprocessing, loaded.class_names)
    inputs, _labels, _info = sample_tensors(bundle.split("val"), count)
    return inputs


def test_small_spec_is_a_28x28_digit_classifier_with_its_data() -> None:
    loaded = load_model_spec("xresnet18-small")
    assert loaded.arch == "xresnet18-small" and loaded.input_shape == (1, 28, 28)
    assert loaded.default_data == "mnist5k" and loaded.class_names == [str(d) for d in range(10)]
    assert loaded.card["trained"] is False
    convs = [m for m in loaded.model.modules() if isinstance(m, nn.Conv2d)]
    stem = convs[0]
    assert (stem.in_channels, stem.out_channels, stem.kernel_size) == (1, SMALL_WIDTH, (3, 3))
    assert not any(isinstance(m, nn.MaxPool2d) for m in loaded.model.modules())
    with torch.no_grad():
        assert loaded.model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_full_spec_is_imagenet_shaped() -> None:
    loaded = load_model_spec("xresnet18")
    assert loaded.arch == "xresnet18" and loaded.input_shape == (3, 224, 224)
    assert len(loaded.class_names) == 1000 and loaded.card["trained"] is False


def test_paper_preset_keeps_stem_and_classifier_float() -> None:
    model = load_model_spec("xresnet18-small").model
    modes = binarize_model(model, "paper")
    assert modes["stem.0"] is Mode.FLOAT and modes["fc"] is Mode.FLOAT
    assert sum(mode is Mode.XNOR for mode in modes.values()) == 19


def test_no_binary_conv_sees_only_non_negative_inputs_in_the_app_table() -> None:
    loaded = load_model_spec("xresnet18-small")
    model = loaded.model
    binarize_model(model, "paper")
    rows = compute_table_stats(model, mnist_sample())
    xnor = [name for name, mode in current_modes(model).items() if mode is Mode.XNOR]
    assert len(xnor) == 19
    assert [name for name in xnor if rows[name].input_never_negative] == []
    assert all(rows[name].input_never_negative is False for name in xnor)


def test_the_report_has_no_never_negative_note() -> None:
    loaded = load_model_spec("xresnet18-small")
    data = ReportData("mnist5k", mnist_sample(16))
    options = ReportOptions(sensitivity=False, latency=False, file_sizes=False)
    report = build_report(loaded, "paper", data, options=options)
    assert not any(NONNEGATIVE_INPUT_HINT in note for note in report.header.notes)
    xnor_rows = [row for row in report.layers if row.mode == "xnor"]
    assert len(xnor_rows) == 19


def randomize_batchnorms(model: nn.Module) -> None:
    """Running statistics away from (0, 1): at random init a binary dot product of 0 meets
    sign's tie at 0, where the engine's and torch's float rounding may fall either side."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert module.running_mean is not None and module.running_var is not None
            module.running_mean.copy_(torch.rand(module.num_features, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)


def test_an_export_reopens_as_the_same_binary_architecture(tmp_path: Path) -> None:
    loaded = load_model_spec("xresnet18-small")
    randomize_batchnorms(loaded.model)
    binarize_model(loaded.model, "paper")
    path = tmp_path / "x.xnor"
    export_xnor(loaded.model, path, loaded)
    reopened = load_xnor(str(path))
    assert reopened.arch == "xresnet18-small" and reopened.input_shape == (1, 28, 28)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(reopened.model(x), loaded.model.eval()(x), rtol=1e-4, atol=1e-4)
