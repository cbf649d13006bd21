"""Parity of XNOR Linear (binary GEMM) and BWN Linear: native (every ISA) vs reference/formula."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xnorlab import engine
from xnorlab.binary.binarize import sign_nonzero
from xnorlab.engine import reference

SETTINGS = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
FEATURES = st.sampled_from([1, 3, 63, 64, 65, 130]) | st.integers(1, 1500)
OUTPUTS = st.sampled_from([1, 8, 32, 33]) | st.integers(1, 300)
LEADING = st.sampled_from([(1,), (5,), (2, 3), ()])


def make_x(leading: tuple[int, ...], features: int, seed: int, zeros: bool) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(*leading, features, generator=gen)
    if zeros:
        x[..., ::3] = 0.0
    return x


@SETTINGS
@given(leading=LEADING, features=FEATURES, outputs=OUTPUTS, seed=st.integers(0, 2**31 - 1),
       zeros=st.booleans())  # fmt: skip
def test_unscaled_xnor_linear_equals_integer_formula(
    isa: str, leading: tuple[int, ...], features: int, outputs: int, seed: int, zeros: bool
) -> None:
    x = make_x(leading, features, seed, zeros)
    signs = torch.where(torch.randn(outputs, features) < 0, -1.0, 1.0)
    out = engine.xnor_linear(x, signs, scaling="none")
    expected = (sign_nonzero(x).double() @ signs.double().T).float()
    assert torch.equal(out, expected)


@pytest.mark.parametrize("scaling", ["kmap", "scalar", "none"])
@SETTINGS
@given(leading=LEADING, features=FEATURES, outputs=OUTPUTS, seed=st.integers(0, 2**31 - 1),
       with_bias=st.booleans())  # fmt: skip
def test_xnor_linear_matches_reference(
    isa: str, scaling: str, leading: tuple[int, ...], features: int, outputs: int, seed: int,
    with_bias: bool,
) -> None:  # fmt: skip
    x = make_x(leading, features, seed, zeros=False)
    weight = torch.randn(outputs, features)
    bias = torch.randn(outputs) if with_bias else None
    out = engine.xnor_linear(x, engine.pack_linear_weight(weight, bias), scaling=scaling)
    ref = reference.xnor_linear(x, weight, bias, scaling=scaling)
    # The reference sums `features` float32 terms +-alpha*beta, the engine an exact integer dot:
    # where the dot is 0 the reference keeps a rounding residue (1.9e-6 seen for 1500 features,
    # one output), so bound the difference by the magnitude of those terms, not of the result.
    beta = float(x.abs().mean(dim=-1).max()) if scaling != "none" else 1.0
    terms = features * float(weight.abs().mean(dim=1).max()) * beta
    atol = 1e-4 * float(ref.abs().max()) + 1e-6 * terms + 1e-6
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=atol)


@SETTINGS
@given(leading=LEADING, features=FEATURES, outputs=OUTPUTS, seed=st.integers(0, 2**31 - 1),
       with_bias=st.booleans())  # fmt: skip
def test_bwn_linear_matches_reference(
    isa: str, leading: tuple[int, ...], features: int, outputs: int, seed: int, with_bias: bool
) -> None:
    x = make_x(leading, features, seed, zeros=False)
    weight = torch.randn(outputs, features)
    bias = torch.randn(outputs) if with_bias else None
    out = engine.bwn_linear(x, engine.pack_linear_weight(weight, bias))
    ref = reference.bwn_linear(x, weight, bias)
    assert out.shape == ref.shape
    # sum x - 2 * sum_neg x cancels: bound the rounding by the magnitude of sum |x|
    scale = float(x.abs().sum(dim=-1).max()) * float(weight.abs().mean(dim=1).max())
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5 * scale + 1e-6)


def test_bwn_linear_reads_exact_signs_with_integer_inputs(isa: str) -> None:
    x = torch.randint(-8, 9, (3, 200)).float()
    signs = torch.where(torch.randn(70, 200) < 0, -1.0, 1.0)
    out = engine.bwn_linear(x, signs)
    assert torch.equal(out, x @ signs.T)
