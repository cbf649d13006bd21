"""The engine's max pool equals torch's ``F.max_pool2d`` bit for bit on every ISA (padding,
strides, channel tails, NaN, signed zeros and ties), and other inputs run torch's own."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xnorlab import engine
from xnorlab.engine import KernelInputError
from xnorlab.engine._backend import native_module

pytestmark = pytest.mark.skipif(
    engine.info()["backend"] != "native", reason="native engine not in use"
)
SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
NHWC = torch.channels_last


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values, NaN where NaN, and the same sign of every zero."""
    return bool(torch.equal(a.isnan(), b.isnan())) and torch.equal(
        a.nan_to_num().view(torch.int32), b.nan_to_num().view(torch.int32)
    )


@SETTINGS
@given(
    batch=st.integers(1, 3), channels=st.integers(1, 70), height=st.integers(1, 13),
    width=st.integers(1, 13), kernel=st.integers(1, 4), stride=st.integers(1, 3),
    data=st.data(), seed=st.integers(0, 2**16),
)  # fmt: skip
def test_max_pool_equals_torch_bit_for_bit(
    isa: str, batch: int, channels: int, height: int, width: int, kernel: int, stride: int,
    data: st.DataObject, seed: int,
) -> None:  # fmt: skip
    kernel_h, kernel_w = min(kernel, height + 2 * (kernel // 2)), kernel
    padding = data.draw(st.integers(0, min(kernel_h, kernel_w) // 2))
    if kernel_h > height + 2 * padding or kernel_w > width + 2 * padding:
        return  # torch refuses it too (the kernel does not fit)
    gen = torch.Generator().manual_seed(seed)
    # Few distinct values, so windows hold ties, and +-0, inf and NaN among them.
    palette = torch.tensor([0.0, -0.0, 1.5, -2.0, math.inf, -math.inf, math.nan, 0.25])
    x = palette[torch.randint(0, 8, (batch, channels, height, width), generator=gen)]
    x = x.contiguous(memory_format=NHWC)
    got = engine.max_pool2d(x, (kernel_h, kernel_w), stride, padding)
    assert got.is_contiguous(memory_format=NHWC)
    assert same_bits(got, F.max_pool2d(x, (kernel_h, kernel_w), stride, padding))


def test_the_resnet_stem_pool_on_each_thread_count(isa: str, threads: int) -> None:
    x = torch.randn(2, 64, 112, 112).contiguous(memory_format=NHWC)
    assert torch.equal(engine.max_pool2d(x, 3, 2, 1), F.max_pool2d(x, 3, 2, 1))


def test_other_inputs_run_torch_itself() -> None:
    x = torch.randn(1, 5, 9, 9)
    for other in (x, x.double().contiguous(memory_format=NHWC), x.requires_grad_()):
        got = engine.max_pool2d(other, 3, 2, 1)
        assert torch.equal(got, F.max_pool2d(other, 3, 2, 1))


def test_bad_pools_are_one_clear_error() -> None:
    x = torch.randn(1, 4, 6, 6).contiguous(memory_format=NHWC)
    with pytest.raises(KernelInputError, match="at most half the kernel"):
        engine.max_pool2d(x, 3, 1, 2)
    with pytest.raises(KernelInputError, match="does not fit"):
        engine.max_pool2d(x, 9, 1, 1)
    with pytest.raises(KernelInputError, match="kernel_size must be"):
        engine.max_pool2d(x, 0)
    with pytest.raises(KernelInputError, match="stride must be"):
        engine.max_pool2d(x, 2, (1, 2, 3))


@SETTINGS
@given(
    channels=st.integers(1, 40), size=st.integers(3, 12),
    clamp=st.sampled_from([(0.0, math.inf), (0.0, 6.0), (-1.0, 1.0), (-0.5, -0.5)]),
    seed=st.integers(0, 2**16),
)  # fmt: skip
def test_a_clamped_pool_is_torchs_pool_then_clamp_and_the_pool_of_the_clamped_input(
    isa: str, channels: int, size: int, clamp: tuple[float, float], seed: int
) -> None:  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    palette = torch.tensor([0.0, -0.0, 1.5, -2.0, math.inf, -math.inf, math.nan, 7.0, 0.25])
    x = palette[torch.randint(0, 9, (2, channels, size, size), generator=gen)]
    x = x.contiguous(memory_format=NHWC)
    got = engine.max_pool2d(x, 3, 2, 1, clamp=clamp)
    assert same_bits(got, F.max_pool2d(x, 3, 2, 1).clamp(*clamp))
    # The ReLU before a pool, applied after it: equal values (a zero may change sign).
    torch.testing.assert_close(got, F.max_pool2d(x.clamp(*clamp), 3, 2, 1), rtol=0, atol=0,
                               equal_nan=True)  # fmt: skip
    nchw = x.contiguous()  # torch's own pool, then the clamp: the reference path
    assert same_bits(engine.max_pool2d(nchw, 3, 2, 1, clamp=clamp), got)


def test_a_clamped_pool_on_each_thread_count(isa: str, threads: int) -> None:
    x = torch.randn(1, 64, 112, 112).contiguous(memory_format=NHWC)
    got = engine.max_pool2d(x, 3, 2, 1, clamp=(0.0, math.inf))
    assert torch.equal(got, F.max_pool2d(x, 3, 2, 1).clamp(min=0.0))


def test_a_bad_clamp_is_one_clear_error() -> None:
    x = torch.randn(1, 8, 6, 6).contiguous(memory_format=NHWC)
    for clamp in [(1.0, 0.0), (0.0, 1.0, 2.0), "ab", (None, 1.0), (math.nan, 1.0)]:
        with pytest.raises(KernelInputError, match="clamp"):
            engine.max_pool2d(x, 3, 2, 1, clamp=clamp)  # type: ignore[arg-type]
    native = native_module()
    assert native is not None
    for bad in [(1.0, 0.0), (math.nan, 1.0)]:
        with pytest.raises(ValueError, match="clamp"):
            native.max_pool2d(x.numpy(), (3, 3), (2, 2), (1, 1), bad)
