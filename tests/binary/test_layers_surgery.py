"""Layer wrappers and model surgery: modes switch without losing weights, presets follow the
paper, undo restores the float model, and it works on real torchvision architectures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from xnorlab import (
    BinConv2d,
    BinLinear,
    FirstLastBinarizedWarning,
    Mode,
    ModeMapError,
    binarize_model,
    binarize_weight,
    current_modes,
    float_mode,
    layer_macs,
    list_layers,
    preset_modes,
    restore_float,
    unbinarizable_layers,
    xnor_conv2d,
)


def small_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.Conv2d(4, 8, 3, padding=1, bias=False),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 16),
        nn.Linear(16, 3),
    ).eval()


def test_wrapper_shares_parameters_and_keeps_float_output() -> None:
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=1)
    x = torch.randn(2, 3, 9, 9)
    wrapped = BinConv2d(conv)
    assert wrapped.weight is conv.weight and wrapped.bias is conv.bias
    assert torch.equal(wrapped(x), conv(x))
    assert isinstance(wrapped, nn.Conv2d)


def test_switching_modes_never_changes_float_weights() -> None:
    conv = nn.Conv2d(3, 5, 3, padding=1)
    before = conv.weight.detach().clone()
    wrapped = BinConv2d(conv)
    x = torch.randn(1, 3, 6, 6)
    for mode in ("bwn", "xnor", "float", "xnor"):
        wrapped.mode = mode
        wrapped(x)
    assert torch.equal(conv.weight, before)
    wrapped.mode = Mode.FLOAT
    assert torch.equal(wrapped(x), conv(x))


def test_bwn_and_xnor_forward_use_the_core_formulas() -> None:
    conv = nn.Conv2d(3, 4, 3, stride=1, padding=1)
    wrapped = BinConv2d(conv)
    x = torch.randn(2, 3, 7, 7)
    wrapped.mode = Mode.BWN
    bwn_expected = F.conv2d(x, binarize_weight(conv.weight), conv.bias, padding=1)
    assert torch.allclose(wrapped(x), bwn_expected)
    wrapped.configure(mode="xnor", scaling="scalar", pad_mode="one")
    expected = xnor_conv2d(x, conv.weight, conv.bias, 1, 1, 1, 1, "scalar", "one")
    assert torch.allclose(wrapped(x), expected)


def test_linear_wrapper_modes() -> None:
    lin = nn.Linear(6, 3)
    wrapped = BinLinear(lin)
    x = torch.randn(4, 6)
    assert torch.equal(wrapped(x), lin(x))
    wrapped.mode = "bwn"
    assert torch.allclose(wrapped(x), F.linear(x, binarize_weight(lin.weight), lin.bias))


def test_bad_settings_are_refused_and_leave_config_intact() -> None:
    wrapped = BinConv2d(nn.Conv2d(1, 1, 1))
    before = wrapped.config
    with pytest.raises(ValueError, match="unknown Mode"):
        wrapped.mode = "ternary"
    with pytest.raises(ValueError, match="clip"):
        wrapped.configure(clip=-1)
    assert wrapped.config == before


def test_training_updates_the_shared_real_valued_weights() -> None:
    net = small_net().train()
    binarize_model(net, "xnor", warn_first_last=False)
    conv = net[2]
    before = conv.weight.detach().clone()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    loss = net(torch.randn(4, 1, 8, 8)).pow(2).mean()
    loss.backward()
    opt.step()
    assert not torch.equal(conv.weight, before)
    restore_float(net)
    assert net[2].weight is conv.weight  # the update landed in the original float layer


def test_paper_preset_keeps_first_and_last_float() -> None:
    net = small_net()
    modes = preset_modes(net, "paper")
    assert modes == {"0": Mode.FLOAT, "2": Mode.XNOR, "5": Mode.XNOR, "6": Mode.FLOAT}
    assert set(preset_modes(net, "bwn").values()) == {Mode.BWN}
    assert preset_modes(net, "paper-bwn")["2"] is Mode.BWN


def test_binarizing_first_or_last_layer_warns() -> None:
    net = small_net()
    with pytest.warns(FirstLastBinarizedWarning, match="first or last"):
        binarize_model(net, "xnor")


def test_unknown_layer_or_mode_is_refused_before_touching_the_model() -> None:
    net = small_net()
    with pytest.raises(ModeMapError, match="unknown layer 'conv9'"):
        binarize_model(net, {"conv9": "xnor"})
    with pytest.raises(ModeMapError, match="layer '2'"):
        binarize_model(net, {"2": "ternary"})
    with pytest.raises(ModeMapError, match="neither a preset"):
        binarize_model(net, "everything")
    assert not any(isinstance(m, (BinConv2d, BinLinear)) for m in net.modules())


def test_mode_file_with_preset_and_overrides(tmp_path: Path) -> None:
    net = small_net()
    path = tmp_path / "modes.json"
    path.write_text(json.dumps({"preset": "paper", "layers": {"5": "bwn"}}))
    applied = binarize_model(net, str(path))
    assert applied == {"0": Mode.FLOAT, "2": Mode.XNOR, "5": Mode.BWN, "6": Mode.FLOAT}
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ModeMapError, match="not valid JSON"):
        binarize_model(net, str(bad))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply|nested deeper"),
        ('{"layers": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}", "nested deeper than"),
        ('{"preset": "paper", "2": "bwn"}', "unknown key '2' beside 'preset'"),
        ('{"preset": ["paper"]}', "'preset' must be a string"),
        ('{"2": NaN}', "not a finite number"),
        ('{"2": 1}', "unknown Mode 1"),
        ("\udcff", "not valid JSON|not UTF-8"),
    ],
)
def test_bad_mode_files_give_one_line(tmp_path: Path, content: str, message: str) -> None:
    net = small_net()
    path = tmp_path / "modes.json"
    path.write_text(content, errors="surrogateescape")
    with pytest.raises(ModeMapError, match=message) as caught:
        binarize_model(net, str(path))
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300
    assert not any(isinstance(m, (BinConv2d, BinLinear)) for m in net.modules())


def test_a_huge_layer_name_is_not_echoed_whole() -> None:
    with pytest.raises(ModeMapError, match="unknown layer") as caught:
        binarize_model(small_net(), {"x" * 2_000_000: "xnor"})
    assert len(str(caught.value)) < 200


def test_attention_projections_are_listed_as_not_binarizable() -> None:
    net = nn.Sequential(nn.Linear(8, 8), nn.MultiheadAttention(8, 2), nn.Linear(8, 4))
    fixed = unbinarizable_layers(net)
    assert list(fixed) == ["1.out_proj"] and "MultiheadAttention" in fixed["1.out_proj"]
    assert [info.name for info in list_layers(net)] == ["0", "2"]
    with pytest.raises(ModeMapError, match=r"'1\.out_proj' cannot be xnor: nn\.MultiheadAttention"):
        binarize_model(net, {"1.out_proj": "xnor"})
    assert binarize_model(net, {"1.out_proj": "float", "0": "bwn"}, warn_first_last=False) == {
        "0": Mode.BWN,
        "2": Mode.FLOAT,
    }


def test_state_dict_round_trip_between_float_and_binarized() -> None:
    net = small_net()
    float_state = {k: v.clone() for k, v in net.state_dict().items()}
    binarize_model(net, "paper")
    assert set(net.state_dict()) == set(float_state)
    other = small_net()
    binarize_model(other, "paper")
    other.load_state_dict(net.state_dict())
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(other(x), net(x))
    fresh = small_net()
    fresh.load_state_dict(net.state_dict())
    restore_float(net)
    assert torch.equal(fresh(x), net(x))


def test_float_mode_context_restores_modes_even_on_error() -> None:
    net = small_net()
    binarize_model(net, "paper")
    before = current_modes(net)
    with pytest.raises(RuntimeError), float_mode(net):
        assert set(current_modes(net).values()) == {Mode.FLOAT}
        raise RuntimeError("boom")
    assert current_modes(net) == before


def test_layer_macs_by_hand() -> None:
    net = small_net()
    macs = layer_macs(net, (1, 8, 8))
    assert macs == {
        "0": 8 * 8 * 4 * 1 * 9,
        "2": 8 * 8 * 8 * 4 * 9,
        "5": 128 * 16,
        "6": 16 * 3,
    }


@pytest.mark.parametrize("arch", ["alexnet", "resnet18", "vgg11_bn", "mobilenet_v2"])
def test_surgery_on_torchvision_models(arch: str) -> None:
    torch.manual_seed(0)
    model = torchvision.models.get_model(arch, weights=None).eval()
    x = torch.randn(1, 3, 64 if arch != "alexnet" else 96, 64 if arch != "alexnet" else 96)
    with torch.no_grad():
        reference = model(x)
        applied = binarize_model(model, "paper")
        names = list(applied)
        assert applied[names[0]] is Mode.FLOAT and applied[names[-1]] is Mode.FLOAT
        assert all(applied[n] is Mode.XNOR for n in names[1:-1])
        binarized = model(x)
        assert torch.isfinite(binarized).all()
        assert (binarized - reference).norm() > 1e-3 * reference.norm()
        restore_float(model)
        assert torch.allclose(
            model(x), reference, rtol=1e-4, atol=1e-6 * float(reference.abs().max())
        )
    infos = list_layers(model)
    assert [i.name for i in infos] == names
    assert all(i.mode is Mode.FLOAT for i in infos)


def test_resnet18_paper_preset_layer_names() -> None:
    model = torchvision.models.resnet18(weights=None)
    modes = preset_modes(model, "paper")
    assert modes["conv1"] is Mode.FLOAT and modes["fc"] is Mode.FLOAT
    assert modes["layer2.0.downsample.0"] is Mode.XNOR
    assert len(modes) == 21
