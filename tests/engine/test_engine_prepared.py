"""PreparedConv2d: a conv validated once for one input shape gives what ``xnor_conv2d`` gives,
for the inputs it was prepared for and (through the facade) for every other."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from xnorlab import engine
from xnorlab.binary.binarize import NaNInputWarning
from xnorlab.engine import Epilogue, KernelInputError, KernelTypeError, PreparedConv2d, Prologue

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
    for shape in [(1, 16, 9), (0, 16, 9, 9), (1, 16, 9, 9, 9), (1, -16, 9, 9), ("a", 16, 9, 9),
                  (1.0, 16, 9, 9), (True, 16, 9, 9), 7]:  # fmt: skip
        with pytest.raises(KernelInputError, match="input_shape must be 4 ints"):
            PreparedConv2d(shape, packed)  # type: ignore[arg-type]
    with pytest.raises(KernelInputError, match="input_shape has 8 channels, the weight expects 16"):
        PreparedConv2d((1, 8, 9, 9), packed)
    with pytest.raises(KernelTypeError, match="packed conv weight"):
        PreparedConv2d((1, 16, 9, 9), torch.randn(24, 16, 3, 3))  # type: ignore[arg-type]
    with pytest.raises(KernelInputError):
        PreparedConv2d((1, 16, 2, 2), packed, padding=0)  # a 3x3 kernel on 2x2 pixels
    with pytest.raises(KernelInputError, match="prologue has 5 channels"):
        PreparedConv2d((1, 16, 9, 9), packed, prologue=Prologue(torch.ones(5), torch.zeros(5)))
    with pytest.raises(KernelInputError, match="lo <= hi"):
        PreparedConv2d((1, 16, 9, 9), packed, clamp=(1.0, 0.0))


def chain(seed: int, batch: int = 2, channels: int = 48) -> tuple[Tensor, PreparedConv2d,
                                                                    PreparedConv2d, Tensor]:  # fmt: skip
    """A writer conv (3x3, stride 2, clamp) and a reader conv (3x3, residual, clamp) of its
    output, prepared for an input of ``batch`` x 16 x 17 x 17."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 16, 17, 17, generator=gen).contiguous(memory_format=NHWC)
    first = engine.pack_conv2d_weight(torch.randn(channels, 16, 3, 3, generator=gen),
                                      torch.randn(channels, generator=gen))  # fmt: skip
    second = engine.pack_conv2d_weight(torch.randn(20, channels, 3, 3, generator=gen))
    writer = PreparedConv2d(tuple(x.shape), first, stride=2, padding=1, clamp=(-1.0, 1.0))
    reader = PreparedConv2d(tuple(writer.out_shape), second, padding=1, clamp=(0.0, 3.0))
    residual = torch.randn(reader.out_shape, generator=gen).contiguous(memory_format=NHWC)
    return x, writer, reader, residual


@pytest.mark.parametrize(("batch", "channels"), [(1, 48), (2, 64), (3, 100), (1, 130)])
def test_a_bit_output_gives_the_reader_what_the_float_output_gives(
    isa: str, threads: int, batch: int, channels: int
) -> None:
    x, writer, reader, residual = chain(batch + channels, batch, channels)
    floats = writer(x)
    assert isinstance(floats, Tensor)
    expected = reader(floats, residual)
    writer.bits_for(reader)
    packed = writer(x)
    assert isinstance(packed, engine.PackedActivation) and packed.shape == floats.shape
    got = reader(packed, residual)
    # The same signs; the K map adds the same |x| in another order (float rounding).
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    writer.bits_for(None)
    assert torch.equal(writer(x), floats)


def tree_sums(values: Tensor) -> Tensor:
    """Sum of ``|v|`` over each block of 32 channels (last dim), in the engine's fixed tree:
    lanes i and i + 16, then halves of 8, 4, 2, 1."""
    t = values.abs().reshape(*values.shape[:-1], -1, 32)
    for width in (16, 8, 4, 2, 1):
        t = t[..., :width] + t[..., width : 2 * width]
    return t[..., 0]


@pytest.mark.parametrize("channels", [64, 40])
def test_a_bit_output_holds_the_signs_and_tree_sums_of_the_float_output(
    isa: str, channels: int
) -> None:
    x, writer, reader, _ = chain(11, 2, channels)
    floats = writer(x)
    assert isinstance(floats, Tensor)
    writer.bits_for(reader)
    packed = writer(x)
    assert isinstance(packed, engine.PackedActivation)
    batch, _, height, width = floats.shape
    nhwc = floats.permute(0, 2, 3, 1)  # (N, H, W, C)
    padded = torch.nn.functional.pad(nhwc, (0, 64 - channels)) if channels % 64 else nhwc
    expected_sums = tree_sums(padded).reshape(batch * height * width, -1)[:, :2]
    assert torch.equal(torch.from_numpy(packed.block_absum), expected_sums)
    # The reader's halo: padding 1 around each 9x9 image (11x11 words, one word per pixel).
    words = torch.from_numpy(packed.bits).reshape(batch, height + 2, width + 2)
    assert torch.all(words[:, 0] == 0) and torch.all(words[:, :, 0] == 0)
    assert torch.all(words[:, -1] == 0) and torch.all(words[:, :, -1] == 0)
    lanes = torch.arange(64)
    bits = (words[:, 1:-1, 1:-1, None] >> lanes) & 1  # (N, H, W, 64), bit c = channel c
    expected_bits = torch.zeros_like(bits)
    expected_bits[..., :channels] = (nhwc < 0).long()
    assert torch.equal(bits, expected_bits)


def test_a_nan_in_a_bit_output_warns_in_its_reader() -> None:
    x, writer, reader, _ = chain(8)
    writer = PreparedConv2d(tuple(x.shape), writer.weight, stride=2, padding=1)  # no clamp
    writer.bits_for(reader)
    x = x.clone()
    x[0, 0, 4, 4] = math.nan  # the writer's K map, so its outputs there, become NaN
    with pytest.warns(NaNInputWarning):
        packed = writer(x)
    with pytest.warns(NaNInputWarning):  # the reader sees NaN in the sums of |x|
        reader(packed)


def test_bit_outputs_refuse_what_they_cannot_serve() -> None:
    x, writer, reader, _ = chain(9)
    other = PreparedConv2d((1, 48, 9, 9), reader.weight, padding=1)  # another batch
    with pytest.raises(KernelInputError, match="reader must take this conv's output"):
        writer.bits_for(other)
    with_prologue = PreparedConv2d(
        tuple(writer.out_shape), reader.weight, padding=1,
        prologue=Prologue(torch.ones(48), torch.zeros(48)),
    )  # fmt: skip
    with pytest.raises(KernelInputError, match="no prologue"):
        writer.bits_for(with_prologue)
    writer.bits_for(reader)
    packed = writer(x)
    twin = PreparedConv2d(tuple(writer.out_shape), reader.weight, padding=1)
    with pytest.raises(KernelInputError, match="only be read by the conv it is for"):
        twin(packed)
    with engine.profile() as records:
        reader(writer(x))
    assert [r.out_shape for r in records] == [tuple(writer.out_shape), tuple(reader.out_shape)]


def test_the_native_packed_call_checks_its_arrays() -> None:
    native = engine._backend.native_module()
    assert native is not None
    x, writer, reader, _ = chain(10)
    writer.bits_for(reader)
    packed = writer(x)
    assert isinstance(packed, engine.PackedActivation)
    _, params, buffers = reader._call  # type: ignore[misc]
    with pytest.raises(ValueError, match="bits must have shape"):
        native.xnor_conv2d_packed(params, buffers, packed.bits[:-1], packed.block_absum)
    with pytest.raises(ValueError, match="block_absum must have shape"):
        native.xnor_conv2d_packed(params, buffers, packed.bits, packed.block_absum[:, :1])
    _, writer_params, writer_buffers = writer._call  # type: ignore[misc]
    with pytest.raises(ValueError, match="not this conv's output"):
        native.xnor_conv2d(writer_params, writer_buffers, x.numpy(), bits_for=writer_params)
