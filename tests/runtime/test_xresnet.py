"""``xresnet18`` (the zoo's binary ResNet-18, XNOR-Net block order): its shape, its paper
preset, and its deployed engine inference against the torch simulation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import xnorlab
from xnorlab import engine
from xnorlab.binary.layers import BinConv2d, BinLinear
from xnorlab.binary.modes import Mode
from xnorlab.binary.surgery import binarize_model
from xnorlab.models.zoo import build_arch
from xnorlab.runtime.deploy import FusedXnorConv


def test_xresnet18_is_resnet18_shaped_with_float_stem_and_classifier() -> None:
    model = build_arch("xresnet18", num_classes=10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 20  # stem + 16 block convs + 3 shortcut convs
    applied = binarize_model(model, "paper")
    modes = {name: mode for name, mode in applied.items()}
    assert modes["stem.0"] is Mode.FLOAT and modes["fc"] is Mode.FLOAT
    assert sum(mode is Mode.XNOR for mode in modes.values()) == 19
    assert isinstance(model.get_submodule("fc"), BinLinear)
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 3, 64, 64)).shape == (2, 10)


@pytest.mark.skipif(engine.info()["backend"] != "native", reason="native engine not in use")
def test_xresnet18_deployed_equals_the_simulation(isa: str) -> None:
    torch.manual_seed(0)
    model = build_arch("xresnet18", num_classes=10).eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    binarize_model(model, "paper")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        deployed = xnorlab.deploy(model)
        got = deployed(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
    # Each block's conv1 -> BN -> Hardtanh (before conv2) is one fused call; the other XNOR
    # convs (conv2, shortcut convs) follow an add or nothing fusable and run packed as they are.
    fused = deployed.deploy_report.fused
    assert len(fused) == 9 and fused[0] == "stem.0+stem.1"  # the float stem conv + its BN
    assert "blocks.0.conv1+blocks.0.pre2.0+blocks.0.pre2.1" in fused
    native = [m for m in deployed.modules() if isinstance(m, BinConv2d) and m.mode is Mode.XNOR]
    assert len(native) == 11 and all(m.native_cache is not None for m in native)
    assert sum(isinstance(m, FusedXnorConv) for m in deployed.modules()) == 8
