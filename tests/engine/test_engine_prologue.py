"""The fused prologue of the XNOR conv: the conv of ``clamp(x * scale + shift, lo, hi)`` in one
engine call (the transform applied while packing) equals the conv of the tensor torch computes,
bit for bit, on every ISA, thread count and batch path."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor

from xnorlab import engine
from xnorlab.binary.binarize import NaNInputWarning
from xnorlab.engine import KernelInputError, KernelTypeError, Prologue

pytestmark = pytest.mark.skipif(
    engine.info()["backend"] != "native", reason="native engine not in use"
)

SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
CLAMPS = [None, (0.0, math.inf), (-1.0, 1.0), (-0.3, 0.2)]


def transformed(x: Tensor, prologue: Prologue) -> Tensor:
    """The prologue as separate torch ops: multiply, add, clamp (each rounded once), in
    channels_last memory (the engine packs NCHW input summing |x| in another order)."""
    out = x * prologue.scale.view(1, -1, 1, 1) + prologue.shift.view(1, -1, 1, 1)
    out = out if prologue.clamp is None else out.clamp(*prologue.clamp)
    return out.contiguous(memory_format=torch.channels_last)


def random_prologue(channels: int, clamp: tuple[float, float] | None,
                    gen: torch.Generator) -> Prologue:  # fmt: skip
    scale = torch.rand(channels, generator=gen) * 2 - 0.5  # some negative, as gamma may be
    return Prologue(scale, torch.randn(channels, generator=gen) * 0.5, clamp)


@SETTINGS
@given(
    batch=st.integers(1, 3), c_in=st.integers(1, 140), c_out=st.integers(1, 70),
    size=st.integers(1, 12), kernel=st.sampled_from([1, 3]), stride=st.integers(1, 2),
    clamp=st.sampled_from(CLAMPS), channels_last=st.booleans(),
    scaling=st.sampled_from(["kmap", "scalar", "none"]), seed=st.integers(0, 2**16),
)  # fmt: skip
def test_prologue_equals_the_conv_of_the_transformed_input(
    isa: str, batch: int, c_in: int, c_out: int, size: int, kernel: int, stride: int,
    clamp: tuple[float, float] | None, channels_last: bool, scaling: str, seed: int,
) -> None:  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, c_in, size, size, generator=gen)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    packed = engine.pack_conv2d_weight(torch.randn(c_out, c_in, kernel, kernel, generator=gen))
    prologue = random_prologue(c_in, clamp, gen)
    conv = {"stride": stride, "padding": kernel // 2, "scaling": scaling}
    got = engine.xnor_conv2d(x, packed, prologue=prologue, **conv)  # type: ignore[arg-type]
    # An input of one pixel or one channel is NCHW and NHWC at once: the plain call packs it as
    # NCHW, summing |x| in another order, so bit-equality is against the NHWC path, which an
    # identity prologue (x * 1 + 0 == x exactly) selects.
    v = transformed(x, prologue)
    identity = Prologue(torch.ones(c_in), torch.zeros(c_in))
    assert torch.equal(got, engine.xnor_conv2d(v, packed, prologue=identity, **conv))  # type: ignore[arg-type]
    plain = engine.xnor_conv2d(v, packed, **conv)  # type: ignore[arg-type]
    if size > 1 and c_in > 1:
        assert torch.equal(got, plain)
    torch.testing.assert_close(got, plain, rtol=1e-5, atol=1e-5 * float(plain.abs().max() + 1))
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(prologue.reference(x), transformed(x, prologue))


@pytest.mark.parametrize("batch", [1, 8])
def test_prologue_on_slabs_phased_and_image_parallel_batches(
    isa: str, threads: int, batch: int
) -> None:
    # 64 channels at 40x40: the input is over a slab; batch 1 on 2 threads runs the phased
    # split, batch 8 the per-image one.
    gen = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, 64, 40, 40, generator=gen).contiguous(memory_format=torch.channels_last)
    packed = engine.pack_conv2d_weight(torch.randn(64, 64, 3, 3, generator=gen))
    prologue = random_prologue(64, (-1.0, 1.0), gen)
    got = engine.xnor_conv2d(x, packed, padding=1, prologue=prologue)
    assert torch.equal(got, engine.xnor_conv2d(transformed(x, prologue), packed, padding=1))


def test_prologue_and_epilogue_together() -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 16, 6, 6, generator=gen)
    packed = engine.pack_conv2d_weight(torch.randn(8, 16, 3, 3, generator=gen))
    prologue = random_prologue(16, (-1.0, 1.0), gen)
    residual = torch.randn(2, 8, 6, 6, generator=gen)
    epilogue = engine.Epilogue(residual, (0.0, 2.0))
    got = engine.xnor_conv2d(x, packed, padding=1, prologue=prologue, epilogue=epilogue)
    plain = engine.xnor_conv2d(transformed(x, prologue), packed, padding=1)
    assert torch.equal(got, (plain + residual).clamp(0.0, 2.0))


def test_a_nan_the_prologue_keeps_warns_like_an_unfused_input() -> None:
    x = torch.randn(1, 8, 4, 4)
    x[0, 3, 1, 1] = math.nan
    packed = engine.pack_conv2d_weight(torch.randn(4, 8, 3, 3))
    prologue = Prologue(torch.ones(8), torch.zeros(8), (-1.0, 1.0))
    with pytest.warns(NaNInputWarning):
        got = engine.xnor_conv2d(x, packed, padding=1, prologue=prologue)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NaNInputWarning)
        expected = engine.xnor_conv2d(transformed(x, prologue), packed, padding=1)
    assert torch.equal(got.isnan(), expected.isnan())
    assert torch.equal(got.nan_to_num(), expected.nan_to_num())


def test_grouped_convs_apply_the_prologue_in_the_reference() -> None:
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(1, 8, 5, 5, generator=gen)
    weight = torch.randn(6, 4, 3, 3, generator=gen)
    prologue = random_prologue(8, (-1.0, 1.0), gen)
    got = engine.xnor_conv2d(x, weight, padding=1, groups=2, prologue=prologue)
    expected = engine.reference.xnor_conv2d(
        transformed(x, prologue), weight, None, 1, 1, 1, "zero", "kmap", 2
    )
    torch.testing.assert_close(got, expected)


def test_bad_prologues_are_one_clear_error() -> None:
    x = torch.randn(1, 8, 4, 4)
    packed = engine.pack_conv2d_weight(torch.randn(4, 8, 3, 3))
    with pytest.raises(KernelInputError, match="prologue has 5 channels, the input 8"):
        engine.xnor_conv2d(x, packed, prologue=Prologue(torch.ones(5), torch.zeros(5)))
    with pytest.raises(KernelInputError, match="same length"):
        Prologue(torch.ones(8), torch.zeros(7))
    with pytest.raises(KernelInputError, match="1-D"):
        Prologue(torch.ones(2, 4), torch.zeros(2, 4))
    with pytest.raises(KernelTypeError, match="float tensor"):
        Prologue(torch.ones(8, dtype=torch.int32), torch.zeros(8))
    with pytest.raises(KernelInputError, match="lo <= hi"):
        Prologue(torch.ones(8), torch.zeros(8), (1.0, -1.0))
    with pytest.raises(KernelInputError, match="lo <= hi"):
        Prologue(torch.ones(8), torch.zeros(8), (math.nan, 1.0))


def test_the_native_call_checks_the_prologue_itself() -> None:
    native = engine._backend.native_module()
    assert native is not None
    x = torch.randn(1, 8, 4, 4)
    packed = engine.pack_conv2d_weight(torch.randn(4, 8, 1, 1))
    engine.xnor_conv2d(x, packed)  # fills the call cache with an NCHW call
    _, params, buffers = next(iter(packed.call_cache.values()))
    ones, zeros = torch.ones(8).numpy(), torch.zeros(8).numpy()
    with pytest.raises(ValueError, match="needs channels_last"):
        native.xnor_conv2d(params, buffers, x.numpy(), None, None, None, ones, zeros)
    with pytest.raises(ValueError, match="given together"):
        native.xnor_conv2d(params, buffers, x.numpy(), None, None, None, ones, None)
    with pytest.raises(ValueError, match="needs prologue_scale"):
        native.xnor_conv2d(params, buffers, x.numpy(), None, None, None, None, None, (0.0, 1.0))
