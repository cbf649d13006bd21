"""PreparedConv2d: a conv validated once for one input shape gives what ``xnor_conv2d`` gives,
for the inputs it was prepared for and (through the facade) for every other."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from xnorlab import engine
from xnorlab.binary.binarize import NaNInputWarning
from xnorlab.engine import Epilogue, KernelInputError, PreparedConv2d, Prologue

pytestmark = pytest.mark.skipif(
    engine.info()["backend"] != "native", reason="native engine not in use"
)
NHWC = torch.channels_last


def setup(seed: int = 0) -> tuple[Tensor, engine.PackedConv2dWeight, Tensor, Prologue]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 16, 9, 9, generator=gen).contiguous(memory_format=NHWC)
    packed = engine.pack_conv2d_weight(torch.randn(24, 16, 3, 3, generator=gen))
    residual = torch.randn(2, 24, 5, 5, generator=gen).contiguous(memory_format=NHWC)
    prologue = Prologue(torch.rand(16, generator=gen) + 0.5, torch.randn(16, generator=gen))
    return x, packed, residual, prologue


def facade(x: Tensor, packed: engine.PackedConv2dWeight, residual: Tensor | None,
           prologue: Prologue | None) -> Tensor:  # fmt: skip
    epilogue = Epilogue(residual, (-1.0, 2.0))
    return engine.xnor_conv2d(x, packed, stride=2, padding=1, epilogue=epilogue,
                              prologue=prologue)  # fmt: skip


@pytest.mark.parametrize("with_prologue", [False, True])
@pytest.mark.parametrize("with_residual", [False, True])
def test_a_prepared_call_equals_the_facade(
    isa: str, with_prologue: bool, with_residual: bool
) -> None:
    x, packed, residual, prologue = setup()
    pro = prologue if with_prologue else None
    res = residual if with_residual else None
    prepared = PreparedConv2d(tuple(x.shape), packed, stride=2, padding=1, clamp=(-1.0, 2.0),
                              prologue=pro)  # fmt: skip
    assert prepared.out_shape == (2, 24, 5, 5)
    got = prepared(x, res)
    assert torch.equal(got, facade(x, packed, res, pro))
    assert got.is_contiguous(memory_format=NHWC)


def test_inputs_it_was_not_prepared_for_go_through_the_facade() -> None:
    x, packed, residual, prologue = setup(1)
    prepared = PreparedConv2d(tuple(x.shape), packed, stride=2, padding=1, clamp=(-1.0, 2.0),
                              prologue=prologue)  # fmt: skip
    nchw = x.contiguous()
    assert torch.equal(prepared(nchw, residual), facade(nchw, packed, residual, prologue))
    double = x.double()
    assert torch.equal(prepared(double, residual), facade(double, packed, residual, prologue))
    other = residual.contiguous()  # NCHW residual: the facade copies it
    assert torch.equal(prepared(x, other), facade(x, packed, other, prologue))
    smaller = x[:1]
    assert torch.equal(prepared(smaller), facade(smaller, packed, None, prologue))
    with engine.profile() as records:  # profiling records every call: through the facade
        prepared(x, residual)
    assert len(records) == 1 and records[0].op == "xnor_conv2d"
    with pytest.raises(KernelInputError, match="channels"):
        prepared(torch.randn(2, 8, 9, 9))


def test_a_prepared_call_warns_about_nan_like_the_facade() -> None:
    x, packed, _, _ = setup(2)
    x = x.clone()
    x[0, 3, 4, 4] = math.nan
    prepared = PreparedConv2d(tuple(x.shape), packed, stride=2, padding=1)
    with pytest.warns(NaNInputWarning):
        prepared(x)


def test_preparing_checks_the_geometry_and_the_prologue() -> None:
    _, packed, _, _ = setup(3)
    with pytest.raises(KernelInputError):
        PreparedConv2d((1, 16, 2, 2), packed, padding=0)  # a 3x3 kernel on 2x2 pixels
    with pytest.raises(KernelInputError, match="prologue has 5 channels"):
        PreparedConv2d((1, 16, 9, 9), packed, prologue=Prologue(torch.ones(5), torch.zeros(5)))
    with pytest.raises(KernelInputError, match="lo <= hi"):
        PreparedConv2d((1, 16, 9, 9), packed, clamp=(1.0, 0.0))
