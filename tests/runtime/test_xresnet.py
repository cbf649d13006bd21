"""``xresnet18`` (the zoo's binary ResNet-18, XNOR-Net block order): its shape, its paper
preset, and its deployed engine inference against the torch simulation."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import xnorlab
from xnorlab import engine
from xnorlab.binary.layers import BinConv2d, BinLinear
from xnorlab.binary.modes import Mode
from xnorlab.binary.surgery import binarize_model
from xnorlab.models.zoo import build_arch
from xnorlab.runtime.fused import AffineClamp, FusedXnorConv


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


def randomize_batchnorms(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model


@pytest.mark.skipif(engine.info()["backend"] != "native", reason="native engine not in use")
@pytest.mark.parametrize(("arch", "shape"), [("xresnet18", (3, 64, 64)),
                                             ("xresnet18-small", (1, 28, 28))])  # fmt: skip
def test_xresnet18_deployed_equals_the_simulation(
    isa: str, arch: str, shape: tuple[int, ...]
) -> None:
    torch.manual_seed(0)
    model = randomize_batchnorms(build_arch(arch, num_classes=10).eval())
    binarize_model(model, "paper")
    x = torch.randn(2, *shape)
    with torch.no_grad():
        expected = model(x)
        deployed = xnorlab.deploy(model)
        got = deployed(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
    # Each block's conv1 -> BN -> Hardtanh (before conv2) and conv2 -> + shortcut are one
    # engine call each. The BatchNorm -> Hardtanh before each block's conv1 (pre1) and before
    # each 1x1 shortcut conv run inside that conv's packing pass (prologues), which makes the
    # shortcut convs fused too; only the head's BN -> ReLU (read by the float pooling) stays
    # a multiply-add with an in-place clamp.
    report = deployed.deploy_report
    assert report.traced and len(report.fused) == 17 and report.fused[0] == "stem.0+stem.1"
    assert "blocks.0.conv1+blocks.0.pre2.0+blocks.0.pre2.1" in report.fused
    assert "blocks.7.conv2+add_7" in report.fused
    assert len(report.prologues) == 11 and report.affine == ["head.0+head.1"]
    assert report.pools == (["stem.2"] if arch == "xresnet18" else [])  # the stem's max pool
    assert "blocks.2.shortcut.0+blocks.2.shortcut.1>blocks.2.shortcut.2" in report.prologues
    assert sum(isinstance(m, FusedXnorConv) for m in deployed.modules()) == 19
    assert sum(isinstance(m, AffineClamp) for m in deployed.modules()) == 1
    assert not any(isinstance(m, nn.BatchNorm2d) for m in deployed.modules())
    native = [m for m in deployed.modules() if isinstance(m, BinConv2d) and m.mode is Mode.XNOR]
    assert native == []
    # The 19 fused convs of the eight blocks are one engine chain (the identity shortcuts of
    # blocks 0, 1, 3, 5 and 7 dropped); the second forward runs it, equal to the convs one by
    # one.
    assert report.chains == [
        "blocks_0_conv1__blocks_0_pre2_0__blocks_0_pre2_1..blocks_7_conv2__add_7 (19 convs)"
    ]
    with torch.no_grad():
        assert torch.equal(deployed(x), got)
    # conv1's output feeds conv2 alone: with bit outputs (off by default) it is handed over
    # packed from the second forward on.
    assert report.bit_outputs == []
    with torch.no_grad():
        deployed = xnorlab.deploy(model, bit_outputs=True)
        torch.testing.assert_close(deployed(x), got, rtol=1e-5, atol=1e-5 * float(got.abs().max()))
    report = deployed.deploy_report
    assert len(report.bit_outputs) == 8
    assert "blocks_0_conv1__blocks_0_pre2_0__blocks_0_pre2_1>blocks_0_conv2__add" in (
        report.bit_outputs
    )
    with torch.no_grad():
        for _ in range(2):
            torch.testing.assert_close(
                deployed(x), got, rtol=1e-5, atol=1e-5 * float(got.abs().max())
            )
    writers = [m for m in deployed.modules() if isinstance(m, FusedXnorConv) and m._reader]
    assert len(writers) == 8
    assert all(p.next is not None for m in writers for p in m._prepared.values())
    # A copy leaves the prepared native calls behind and makes its own.
    twin = copy.deepcopy(deployed)
    with torch.no_grad():
        for _ in range(2):
            torch.testing.assert_close(twin(x), got, rtol=1e-5, atol=1e-5 * float(got.abs().max()))
