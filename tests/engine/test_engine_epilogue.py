"""The fused epilogue of the XNOR conv: ``clamp(conv + residual, lo, hi)`` in one engine call
equals the conv followed by torch's add and clamp, bit for bit, on every ISA."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor

from xnorlab import engine
from xnorlab.engine import Epilogue, KernelInputError, KernelTypeError

pytestmark = pytest.mark.skipif(
    engine.info()["backend"] != "native", reason="native engine not in use"
)

SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
CLAMPS = [None, (0.0, math.inf), (-1.0, 1.0), (-0.3, 0.2)]


def unfused(x: Tensor, packed: engine.PackedConv2dWeight, residual: Tensor | None,
            clamp: tuple[float, float] | None, **conv: object) -> Tensor:  # fmt: skip
    out = engine.xnor_conv2d(x, packed, **conv)  # type: ignore[arg-type]
    if residual is not None:
        out = out + residual
    return out if clamp is None else out.clamp(clamp[0], clamp[1])


@SETTINGS
@given(
    batch=st.integers(1, 3), c_in=st.integers(1, 140), c_out=st.integers(1, 100),
    size=st.integers(1, 12), kernel=st.sampled_from([1, 3]), stride=st.integers(1, 2),
    with_residual=st.booleans(), clamp=st.sampled_from(CLAMPS),
    channels_last=st.booleans(), seed=st.integers(0, 2**16),
)  # fmt: skip
def test_epilogue_equals_conv_then_add_then_clamp(
    isa: str, batch: int, c_in: int, c_out: int, size: int, kernel: int, stride: int,
    with_residual: bool, clamp: tuple[float, float] | None, channels_last: bool, seed: int,
) -> None:  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, c_in, size, size, generator=gen)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    packed = engine.pack_conv2d_weight(
        torch.randn(c_out, c_in, kernel, kernel, generator=gen), torch.randn(c_out, generator=gen)
    )
    conv = {"stride": stride, "padding": kernel // 2}
    out_size = (size + 2 * (kernel // 2) - kernel) // stride + 1
    residual = None
    if with_residual:
        residual = torch.randn(batch, c_out, out_size, out_size, generator=gen)
        if seed % 2:  # NCHW residuals are copied to channels_last first
            residual = residual.contiguous(memory_format=torch.channels_last)
    got = engine.xnor_conv2d(x, packed, epilogue=Epilogue(residual, clamp), **conv)  # type: ignore[arg-type]
    assert torch.equal(got, unfused(x, packed, residual, clamp, **conv))
    assert got.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("batch", [1, 8])
def test_epilogue_on_large_outputs_slabs_and_image_parallel_batches(
    isa: str, threads: int, batch: int
) -> None:
    # 64 channels at 40x40: the output is over the streaming-store size, the input over a slab.
    gen = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, 64, 40, 40, generator=gen).contiguous(memory_format=torch.channels_last)
    packed = engine.pack_conv2d_weight(torch.randn(64, 64, 3, 3, generator=gen))
    residual = torch.randn(batch, 64, 40, 40, generator=gen).contiguous(
        memory_format=torch.channels_last
    )
    got = engine.xnor_conv2d(x, packed, padding=1, epilogue=Epilogue(residual, (0.0, 1.5)))
    assert torch.equal(got, unfused(x, packed, residual, (0.0, 1.5), padding=1))


def test_epilogue_keeps_nan_like_torch_clamp() -> None:
    x = torch.randn(1, 8, 4, 4)
    packed = engine.pack_conv2d_weight(torch.randn(4, 8, 1, 1))
    residual = torch.zeros(1, 4, 4, 4)
    residual[0, 1, 2, 3] = math.nan
    got = engine.xnor_conv2d(x, packed, epilogue=Epilogue(residual, (0.0, 1.0)))
    assert torch.equal(got.isnan(), residual.isnan())


def test_bad_epilogues_are_one_clear_error() -> None:
    x = torch.randn(1, 8, 4, 4)
    packed = engine.pack_conv2d_weight(torch.randn(4, 8, 3, 3))
    with pytest.raises(KernelInputError, match="output's shape"):
        engine.xnor_conv2d(x, packed, epilogue=Epilogue(torch.zeros(1, 4, 4, 4)))
    with pytest.raises(KernelInputError, match="lo <= hi"):
        engine.xnor_conv2d(x, packed, epilogue=Epilogue(None, (1.0, 0.0)))
    with pytest.raises(KernelInputError, match="lo <= hi"):
        engine.xnor_conv2d(x, packed, epilogue=Epilogue(None, (math.nan, 0.0)))
    with pytest.raises(KernelTypeError, match="float tensor"):
        engine.xnor_conv2d(x, packed, epilogue=Epilogue(torch.zeros(1, 4, 2, 2, dtype=torch.int32)))


def test_the_native_call_checks_the_residual_layout_itself() -> None:
    native = engine._backend.native_module()
    assert native is not None
    x = torch.randn(1, 8, 4, 4)
    packed = engine.pack_conv2d_weight(torch.randn(4, 8, 1, 1))
    engine.xnor_conv2d(x, packed)  # fills the call cache
    _, params, buffers = next(iter(packed.call_cache.values()))
    nchw = torch.zeros(1, 4, 4, 4).numpy()  # dense, but not in NHWC memory
    with pytest.raises(ValueError, match="residual is not dense"):
        native.xnor_conv2d(params, buffers, x.numpy(), None, nchw, None)
    with pytest.raises(ValueError, match="lo <= hi"):
        native.xnor_conv2d(params, buffers, x.numpy(), None, None, (2.0, 1.0))
