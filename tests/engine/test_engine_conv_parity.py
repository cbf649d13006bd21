"""Property-based parity of the XNOR conv: native (every ISA) vs reference vs the formula."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xnorlab import engine
from xnorlab.binary.binarize import sign_nonzero
from xnorlab.engine import reference

SETTINGS = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@dataclass(frozen=True)
class Case:
    batch: int
    c_in: int
    c_out: int
    kernel: int
    stride: int
    padding: int
    dilation: int
    height: int
    width: int
    layout: str  # "nchw", "channels_last" or "strided"
    zeros: float  # fraction of exact zeros (half of them -0.0)
    seed: int


@st.composite
def cases(draw: st.DrawFn) -> Case:
    c_in = draw(st.sampled_from([1, 3, 63, 64, 65, 130]) | st.integers(1, 600))
    kernel = draw(st.sampled_from([1, 3, 5, 7]))
    dilation = draw(st.integers(1, 2))
    padding = draw(st.integers(0, 3))
    span = dilation * (kernel - 1) + 1
    low = max(1, span - 2 * padding)
    side = 6 if c_in > 200 else 11  # keep the work per example small
    height = draw(st.integers(low, max(low, side)))
    width = draw(st.integers(low, max(low, side)))
    return Case(
        batch=draw(st.sampled_from([1, 1, 2, 3, 5])), c_in=c_in,
        c_out=draw(st.sampled_from([1, 7, 32, 33, 64]) | st.integers(1, 300)), kernel=kernel,
        stride=draw(st.integers(1, 3)), padding=padding, dilation=dilation, height=height,
        width=width, layout=draw(st.sampled_from(["nchw", "channels_last", "strided"])),
        zeros=draw(st.sampled_from([0.0, 0.3])), seed=draw(st.integers(0, 2**31 - 1)),
    )  # fmt: skip


def make_input(case: Case, gen: torch.Generator) -> torch.Tensor:
    shape = (case.batch, case.c_in, case.height, case.width)
    x = torch.randn(shape, generator=gen)
    if case.zeros:
        mask = torch.rand(shape, generator=gen) < case.zeros
        zero = torch.where(torch.rand(shape, generator=gen) < 0.5, 0.0, -0.0)
        x = torch.where(mask, zero, x)
    if case.layout == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    if case.layout == "strided":
        wide = torch.zeros(case.batch, case.c_in, case.height, 2 * case.width)
        wide[..., ::2] = x
        return wide[..., ::2]
    return x


def formula(x: torch.Tensor, signs: torch.Tensor, case: Case, pad_mode: str) -> torch.Tensor:
    """``F.conv2d(pad(sign(x)), sign(w))`` in float64 (exact integers)."""
    binary = sign_nonzero(x).double()
    if pad_mode == "one":
        p = case.padding
        binary = F.pad(binary, (p, p, p, p), value=1.0)
        return F.conv2d(binary, signs.double(), stride=case.stride, dilation=case.dilation)
    return F.conv2d(
        binary, signs.double(), stride=case.stride, padding=case.padding, dilation=case.dilation
    )


@pytest.mark.parametrize("pad_mode", ["zero", "one"])
@SETTINGS
@given(case=cases())
def test_unscaled_conv_equals_integer_formula(isa: str, pad_mode: str, case: Case) -> None:
    gen = torch.Generator().manual_seed(case.seed)
    x = make_input(case, gen)
    shape = (case.c_out, case.c_in, case.kernel, case.kernel)
    signs = torch.where(torch.rand(shape, generator=gen) < 0.5, -1.0, 1.0)  # alpha = 1
    out = engine.xnor_conv2d(
        x, signs, stride=case.stride, padding=case.padding, dilation=case.dilation,
        pad_mode=pad_mode, scaling="none",
    )  # fmt: skip
    expected = formula(x, signs, case, pad_mode).float()
    assert out.shape == expected.shape
    assert torch.equal(out, expected)


@pytest.mark.parametrize("scaling", ["kmap", "scalar", "none"])
@SETTINGS
@given(case=cases(), pad_mode=st.sampled_from(["zero", "one"]), with_bias=st.booleans())
def test_scaled_conv_matches_reference(
    isa: str, scaling: str, case: Case, pad_mode: str, with_bias: bool
) -> None:
    gen = torch.Generator().manual_seed(case.seed)
    x = make_input(case, gen)
    weight = torch.randn(case.c_out, case.c_in, case.kernel, case.kernel, generator=gen)
    bias = torch.randn(case.c_out, generator=gen) if with_bias else None
    packed = engine.pack_conv2d_weight(weight, bias)
    geometry = {"stride": case.stride, "padding": case.padding, "dilation": case.dilation}
    out = engine.xnor_conv2d(x, packed, pad_mode=pad_mode, scaling=scaling, **geometry)
    ref = reference.xnor_conv2d(x, weight, bias, pad_mode=pad_mode, scaling=scaling, **geometry)
    # float rounding only: the reference sums c_in*k*k terms +-alpha*S, the engine scales an
    # exact integer; where that integer is 0 only the magnitude of the terms bounds the residue
    scale = float(x.abs().mean(dim=1).max()) if scaling != "none" else 1.0  # K map/beta <= this
    terms = case.c_in * case.kernel**2 * float(weight.abs().mean(dim=(1, 2, 3)).max()) * scale
    atol = 1e-4 * float(ref.abs().max()) + 1e-6 * terms + 1e-6
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=atol)
