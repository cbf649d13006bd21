"""A single image's conv split across threads (one parallel region: pack chunks, K map row
bands, conv tasks) gives the same bits as one thread, on every ISA.

Calls with at least 2^19 word operations take the split on several threads (the shapes marked
"split" below are over it), and so do calls whose input has 2^15 floats or more (their conv
phase splits from 2^16 word operations, else runs as one task per block group); smaller ones
run on the calling thread and must agree too.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor

from xnorlab import engine
from xnorlab.binary.binarize import NaNInputWarning
from xnorlab.engine import Epilogue, reference

pytestmark = pytest.mark.skipif(
    engine.info()["backend"] != "native", reason="native engine not in use"
)

SETTINGS = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(autouse=True, params=list(engine.ThreadPool), ids=lambda p: p.value)
def pool(request: pytest.FixtureRequest, restore_engine_threads: None) -> engine.ThreadPool:
    """Every test on torch's OpenMP team, then on the engine's own pool (the thread count and
    pool are put back after it)."""
    engine.set_thread_pool(request.param)
    return request.param  # type: ignore[no-any-return]


def conv_on(threads: int, x: Tensor, weight: engine.PackedConv2dWeight, **conv: object) -> Tensor:
    engine.set_threads(threads)
    return engine.xnor_conv2d(x, weight, **conv)  # type: ignore[arg-type]


def word_ops(x: Tensor, out: Tensor, kernel: tuple[int, int]) -> int:
    """The engine's measure of a call's work (padded 32-channel blocks, 64-bit words)."""
    blocks = math.ceil(out.shape[1] / 32)
    words = math.ceil(x.shape[1] / 64)
    return out.shape[0] * out.shape[2] * out.shape[3] * kernel[0] * kernel[1] * words * blocks * 32


# (c_in, c_out, height, width, kernel, stride, padding, dilation, split): split = over 2^19
# word operations; 56x56 and 47x45 outputs get several K map bands of uneven heights.
SHAPES = [
    (64, 64, 56, 56, 3, 1, 1, 1, True),  # resnet18 layer1
    (128, 128, 28, 28, 3, 1, 1, 1, True),  # layer2
    (512, 512, 7, 7, 3, 1, 1, 1, True),  # layer4: 7 output rows
    (64, 128, 56, 56, 1, 2, 0, 1, False),  # 1x1 stride-2 shortcut
    (64, 128, 56, 56, 3, 2, 1, 1, True),  # 3x3 stride 2 (903,168 word ops)
    (65, 33, 33, 31, 3, 1, 1, 1, True),  # odd channels: 2 words, a part-full block
    (130, 70, 29, 31, 5, 2, 2, 1, True),  # 3 words, 5x5 stride 2
    (64, 64, 47, 45, 3, 1, 2, 2, True),  # dilation 2
    (7, 3, 9, 5, 3, 1, 1, 1, False),  # tiny
    (200, 40, 1, 1, 1, 1, 0, 1, False),  # one pixel
    (256, 600, 16, 16, 1, 4, 0, 1, False),  # 2^16 input floats, 2 block groups, 39 K word ops
    (256, 512, 14, 14, 1, 2, 0, 1, False),  # layer3's shortcut: 50,176 input floats (phased)
]


def test_the_split_shapes_are_the_ones_over_the_size_that_wakes_a_worker() -> None:
    for c_in, c_out, height, width, kernel, stride, padding, dilation, split in SHAPES:
        x = torch.zeros(1, c_in, height, width)
        out = torch.nn.functional.conv2d(
            x, torch.zeros(c_out, c_in, kernel, kernel), None, stride, padding, dilation
        )
        assert (word_ops(x, out, (kernel, kernel)) >= 2**19) == split, (c_in, c_out)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("threads", [2, 3])
def test_batch_1_on_several_threads_equals_one_thread(
    isa: str, shape: tuple[int, ...], threads: int
) -> None:
    c_in, c_out, height, width, kernel, stride, padding, dilation, _ = shape
    gen = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(1, c_in, height, width, generator=gen)
    packed = engine.pack_conv2d_weight(
        torch.randn(c_out, c_in, kernel, kernel, generator=gen), torch.randn(c_out, generator=gen)
    )
    for layout in (torch.contiguous_format, torch.channels_last):
        xl = x.contiguous(memory_format=layout)
        for scaling in ("kmap", "scalar", "none"):
            for pad_mode in ("zero", "one"):
                conv = {"stride": stride, "padding": padding, "dilation": dilation,
                        "scaling": scaling, "pad_mode": pad_mode}  # fmt: skip
                one = conv_on(1, xl, packed, **conv)
                several = conv_on(threads, xl, packed, **conv)
                assert torch.equal(several, one), (layout, scaling, pad_mode)
    default = conv_on(threads, x, packed, stride=stride, padding=padding, dilation=dilation)
    ref = reference.xnor_conv2d(x, packed, None, stride, padding, dilation)
    torch.testing.assert_close(default, ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("threads", [2, 3])
def test_the_fused_epilogue_on_several_threads_equals_one_thread(isa: str, threads: int) -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 64, 56, 56, generator=gen).contiguous(memory_format=torch.channels_last)
    packed = engine.pack_conv2d_weight(torch.randn(64, 64, 3, 3, generator=gen))
    residual = torch.randn(1, 64, 56, 56, generator=gen).contiguous(
        memory_format=torch.channels_last
    )
    for epilogue in (Epilogue(None, (0.0, math.inf)), Epilogue(residual, (-1.0, 1.0))):
        one = conv_on(1, x, packed, padding=1, epilogue=epilogue)
        several = conv_on(threads, x, packed, padding=1, epilogue=epilogue)
        assert torch.equal(several, one)


@SETTINGS
@given(
    c_in=st.integers(1, 200), c_out=st.integers(1, 100), height=st.integers(1, 64),
    width=st.integers(1, 64), kernel=st.sampled_from([1, 3, 5]), stride=st.integers(1, 2),
    threads=st.sampled_from([2, 3]), scaling=st.sampled_from(["kmap", "scalar", "none"]),
    seed=st.integers(0, 2**16),
)  # fmt: skip
def test_any_single_image_on_several_threads_equals_one_thread(
    isa: str, c_in: int, c_out: int, height: int, width: int,
    kernel: int, stride: int, threads: int, scaling: str, seed: int,
) -> None:  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, c_in, height, width, generator=gen)
    packed = engine.pack_conv2d_weight(torch.randn(c_out, c_in, kernel, kernel, generator=gen))
    conv = {"stride": stride, "padding": kernel // 2, "scaling": scaling}
    assert torch.equal(conv_on(threads, x, packed, **conv), conv_on(1, x, packed, **conv))


@pytest.mark.parametrize("where", [(0, 0), (27, 55), (55, 55)])
def test_a_nan_anywhere_in_a_split_image_is_reported(isa: str, where: tuple[int, int]) -> None:
    x = torch.randn(1, 64, 56, 56)
    x[0, 5, where[0], where[1]] = float("nan")
    packed = engine.pack_conv2d_weight(torch.randn(64, 64, 3, 3))
    engine.set_threads(2)
    with pytest.warns(NaNInputWarning):
        out = engine.xnor_conv2d(x, packed, padding=1, scaling="kmap")
    with pytest.warns(NaNInputWarning):
        ref = reference.xnor_conv2d(x, packed, None, 1, 1, 1, "zero", "kmap")
    torch.testing.assert_close(out, ref, equal_nan=True)
