"""The typed native call: ConvParams and PackedBuffers objects plus numpy arrays, each checked in
C++ whatever the facade checked, with bad input raising ValueError / TypeError (mapped by the
facade to KernelInputError / KernelTypeError)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from xnorlab import engine
from xnorlab.engine._backend import native_module
from xnorlab.engine._checks import MAX_DIM, MAX_ELEMENTS
from xnorlab.engine.errors import KernelInputError, KernelTypeError

native: Any = native_module()
pytestmark = pytest.mark.skipif(native is None, reason="native engine not in use")

GEOMETRY: dict[str, Any] = {
    "input_shape": (2, 20, 9, 9), "channels_last": False, "out_channels": 12, "kernel": (3, 3),
    "stride": (1, 1), "dilation": (1, 1), "pad_top": 1, "pad_bottom": 1, "pad_left": 1,
    "pad_right": 1, "pad_mode": "zero", "scaling": "kmap",
}  # fmt: skip


def _packed() -> engine.PackedConv2dWeight:
    return engine.pack_conv2d_weight(torch.randn(12, 20, 3, 3), torch.randn(12))


def test_the_size_limits_are_the_engines() -> None:
    assert (native.MAX_DIM, native.MAX_ELEMENTS) == (MAX_DIM, MAX_ELEMENTS) == (2**31 - 1, 2**32)


def test_conv_params_are_validated_on_creation_and_read_only() -> None:
    params = native.ConvParams(**GEOMETRY)
    assert params.out_shape == (2, 12, 9, 9)
    assert params.padding == (1, 1, 1, 1) and params.kernel == (3, 3)
    assert (params.pad_mode, params.scaling) == ("zero", "kmap")
    assert "ConvParams(input_shape=(2, 20, 9, 9)" in repr(params)
    with pytest.raises(AttributeError):
        params.out_channels = 3
    with pytest.raises(TypeError):
        native.ConvParams(2, 20, 9, 9)  # keywords only: no parameter order to get wrong
    bad = [
        ({"input_shape": (0, 20, 9, 9)}, "batch must be in 1.."),
        ({"stride": (1, 2**31)}, "stride_w must be in"),
        ({"pad_left": -1}, "pad_left must be in 0.."),
        ({"kernel": (12, 3)}, "does not fit the padded input height"),
        ({"pad_top": 2**30, "pad_bottom": 2**30}, "padded input height is too large"),
        ({"pad_top": 2**19, "pad_bottom": 2**19, "pad_left": 2**19, "pad_right": 2**19},
         "conv output is too large"),
        ({"stride": (2**20, 2**20), "pad_top": 2**20, "pad_bottom": 2**20, "pad_left": 2**20,
          "pad_right": 2**20}, "padded input is too large"),
        ({"input_shape": (2**16, 2**16, 2, 2)}, "conv input is too large"),
        ({"input_shape": (1, 2**28, 9, 9)}, "K = channels"),
        ({"pad_mode": "reflect"}, "pad_mode must be"),
        ({"scaling": "beta"}, "scaling must be"),
    ]  # fmt: skip
    for change, match in bad:
        with pytest.raises(ValueError, match=match):
            native.ConvParams(**{**GEOMETRY, **change})


def test_conv_call_checks_every_buffer_against_its_parameters() -> None:
    packed = _packed()
    params = native.ConvParams(**GEOMETRY)
    buffers = packed.native_buffers(native)
    x = torch.randn(2, 20, 9, 9)
    out, has_nan, timing = native.xnor_conv2d(params, buffers, x.numpy())
    assert out.shape == (2, 12, 9, 9) and out.ctypes.data % 64 == 0 and not has_nan
    assert len(timing) == 4
    expected = engine.xnor_conv2d(x, packed, padding=1)
    assert torch.equal(torch.from_numpy(out), expected)
    assert torch.from_numpy(out).is_contiguous(memory_format=torch.channels_last)
    bad: list[tuple[Any, type[Exception], str]] = [
        (x.double().numpy(), TypeError, "input must be float32"),
        (x, TypeError, "incompatible function arguments"),  # a tensor, not an array
        (x[:1].numpy(), ValueError, r"input must have shape \(2, 20, 9, 9\)"),
        (x.contiguous(memory_format=torch.channels_last).numpy(), ValueError, "not dense"),
        (np.broadcast_to(np.float32(1.0), (2, 20, 9, 9)), ValueError, "not dense"),
        (x.numpy()[..., ::-1], ValueError, "not dense"),
    ]
    for array, error, match in bad:
        with pytest.raises(error, match=match):
            native.xnor_conv2d(params, buffers, array)
    with pytest.raises(ValueError, match="bias must have shape"):
        native.xnor_conv2d(params, buffers, x.numpy(), np.zeros(12, np.float32))
    other = native.ConvParams(**{**GEOMETRY, "out_channels": 13})
    with pytest.raises(ValueError, match="do not match the packed weight"):
        native.xnor_conv2d(other, buffers, x.numpy())


def test_packed_buffers_check_their_arrays() -> None:
    packed = _packed()
    arrays = {
        "bits": packed.bits.numpy(), "tap_sums": packed.tap_sums.numpy(),
        "alpha": packed.alpha_padded.numpy(), "bias": packed.bias_padded.numpy(),
        "out_channels": 12, "in_channels": 20,
    }  # fmt: skip
    assert native.PackedBuffers(**arrays).taps == 9
    bad: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"in_channels": 65}, ValueError, "bits must have shape"),
        ({"out_channels": 33}, ValueError, "bits must have shape"),
        ({"tap_sums": packed.tap_sums.long().numpy()}, TypeError, "tap_sums must be int32"),
        ({"alpha": packed.alpha_padded[:12].numpy()}, ValueError, "alpha must have shape"),
        ({"bias": packed.bias_padded}, TypeError, "incompatible"),
    ]
    for change, error, match in bad:
        with pytest.raises(error, match=match):
            native.PackedBuffers(**{**arrays, **change})


def test_the_facade_maps_native_refusals_to_its_errors() -> None:
    """An inconsistent packed object reaches the C++ checks, which the facade reports as its
    own errors."""
    packed = _packed()
    packed.alpha_padded = packed.alpha_padded[:16]
    with pytest.raises(KernelInputError, match="alpha must have shape"):
        engine.xnor_conv2d(torch.randn(1, 20, 5, 5), packed)
    linear = engine.pack_linear_weight(torch.randn(5, 30))
    linear.tap_sums = linear.tap_sums.float()
    with pytest.raises(KernelTypeError, match="tap_sums must be int32"):
        engine.xnor_linear(torch.randn(2, 30), linear)


def test_linear_calls_check_their_rows() -> None:
    linear = engine.pack_linear_weight(torch.randn(5, 30), torch.randn(5))
    buffers = linear.native_buffers(native)
    rows = torch.randn(3, 30)
    out, has_nan, _ = native.xnor_linear(buffers, rows.numpy(), "scalar")
    assert not has_nan
    assert torch.equal(torch.from_numpy(out), engine.xnor_linear(rows, linear, scaling="kmap"))
    bwn, _ = native.bwn_linear(buffers, rows.numpy())
    wide = engine.pack_linear_weight(torch.randn(2**12, 1))
    assert torch.equal(torch.from_numpy(bwn), engine.bwn_linear(rows, linear))
    batched = torch.randn(2, 3, 30)  # rows are all the leading dims, the output keeps them
    out3, _, _ = native.xnor_linear(buffers, batched.numpy(), "none")
    assert out3.shape == (2, 3, 5)
    assert torch.equal(torch.from_numpy(out3), engine.xnor_linear(batched, linear, scaling="none"))
    for fn, args in ((native.xnor_linear, ("kmap",)), (native.bwn_linear, ())):
        with pytest.raises(ValueError, match=r"must have 1\.\.8 dims"):
            fn(buffers, np.zeros((1,) * 9 + (30,), np.float32), *args)
        with pytest.raises(ValueError, match="more than 2147483647 input rows"):
            fn(buffers, np.broadcast_to(np.float32(0.0), (2**16, 2**16, 30)), *args)
        with pytest.raises(ValueError, match=r"must have shape \(3, 30\)"):
            fn(buffers, torch.randn(3, 31).numpy(), *args)
        with pytest.raises(ValueError, match="input is too large"):
            fn(buffers, np.broadcast_to(np.float32(0.0), (2**31 - 1, 30)), *args)
        with pytest.raises(ValueError, match="output is too large"):  # 2**21 rows x 2**12
            fn(wide.native_buffers(native), np.broadcast_to(np.float32(0.0), (2**21, 1)), *args)
        with pytest.raises(ValueError, match="not a Linear weight"):
            fn(_packed().native_buffers(native), rows.numpy(), *args)
    with pytest.raises(ValueError, match="scaling must be"):
        native.xnor_linear(buffers, rows.numpy(), "beta")


def test_pack_weight_checks_its_arrays() -> None:
    weight = torch.randn(12, 20, 9)
    bits = torch.empty((1, 9, 1, 32), dtype=torch.int64)
    native.pack_weight(weight.numpy(), bits.numpy())
    assert torch.equal(bits, _packed_bits(weight))
    with pytest.raises(ValueError, match="bits must have shape"):
        native.pack_weight(weight.numpy(), torch.empty((1, 9, 2, 32), dtype=torch.int64).numpy())
    read_only = bits.numpy().copy()
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        native.pack_weight(weight.numpy(), read_only)
    with pytest.raises(TypeError, match="weight must be float32"):
        native.pack_weight(weight.double().numpy(), bits.numpy())


def _packed_bits(weight: torch.Tensor) -> torch.Tensor:
    return engine.pack_conv2d_weight(weight.reshape(12, 20, 3, 3)).bits
