"""Bit layout, packed-weight objects, their state round trip, and the weight-size bound."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from xnorlab import engine
from xnorlab.binary.binarize import NaNInputWarning
from xnorlab.engine.errors import KernelInputError, KernelTypeError
from xnorlab.engine.packed import pack_bits, words_for


def _unsigned(words: torch.Tensor) -> list[int]:
    return [int(v) & (2**64 - 1) for v in words.reshape(-1).tolist()]


@pytest.mark.parametrize("channels", [1, 3, 63, 64, 65, 130, 200])
def test_packed_bits_follow_the_documented_layout(isa: str, channels: int) -> None:
    weight = torch.randn(5, channels, 3, 3)
    weight[0, 0, 0, 0] = 0.0  # sign(0) = +1 -> bit 0
    weight[1, 0, 0, 0] = -0.0  # -0.0 >= 0 -> bit 0
    state = engine.pack_conv2d_weight(weight).to_state()
    assert state["bits"].dtype == torch.int64
    assert tuple(state["bits"].shape) == (5, 9, words_for(channels))
    for out_channel in range(5):
        for tap in range(9):
            column = weight[out_channel, :, tap // 3, tap % 3].tolist()
            assert _unsigned(state["bits"][out_channel, tap]) == pack_bits(column)


def test_pack_bits_reference_sets_bit_one_for_negative_values() -> None:
    assert pack_bits([1.0, -1.0, 0.0, -0.5]) == [0b1010]
    assert pack_bits([-1.0] * 65) == [2**64 - 1, 1]


def test_alpha_bias_and_weight_bytes() -> None:
    weight, bias = torch.randn(10, 130, 3, 3), torch.randn(10)
    packed = engine.pack_conv2d_weight(weight, bias)
    torch.testing.assert_close(packed.alpha, weight.abs().mean(dim=(1, 2, 3)))
    assert torch.equal(packed.bias, bias)
    assert (packed.out_channels, packed.in_channels, packed.kernel_size) == (10, 130, (3, 3))
    assert packed.weight_bytes == 10 * 9 * 3 * 8  # kh*kw*ceil(C/64)*8 per filter
    linear = engine.pack_linear_weight(torch.randn(7, 128))
    assert linear.weight_bytes == 7 * 128 // 8  # exactly 1 bit per weight


def test_state_round_trip_through_safetensors(isa: str, tmp_path: object) -> None:
    weight, bias = torch.randn(33, 70, 3, 3), torch.randn(33)
    packed = engine.pack_conv2d_weight(weight, bias)
    path = f"{tmp_path}/w.safetensors"
    save_file(packed.to_state(), path)
    loaded = engine.PackedConv2dWeight.from_state(load_file(path))
    x = torch.randn(2, 70, 8, 8)
    assert torch.equal(
        engine.xnor_conv2d(x, packed, padding=1), engine.xnor_conv2d(x, loaded, padding=1)
    )
    linear = engine.pack_linear_weight(torch.randn(9, 100))
    again = engine.PackedLinearWeight.from_state(linear.to_state())
    xl = torch.randn(4, 100)
    assert torch.equal(engine.bwn_linear(xl, linear), engine.bwn_linear(xl, again))


def test_packed_weights_deep_copy_and_pickle_after_calls(isa: str) -> None:
    """The native objects cached by a call (parameters, buffers) are dropped by copy and pickle;
    the copy computes the same results and fills its own caches."""
    conv = engine.pack_conv2d_weight(torch.randn(40, 70, 3, 3), torch.randn(40))
    linear = engine.pack_linear_weight(torch.randn(9, 100), torch.randn(9))
    x, rows = torch.randn(2, 70, 8, 8), torch.randn(4, 100)
    expected = (engine.xnor_conv2d(x, conv, padding=1), engine.xnor_linear(rows, linear),
                engine.bwn_linear(rows, linear))  # fmt: skip
    copies = [
        (copy.deepcopy(conv), copy.deepcopy(linear)),
        (pickle.loads(pickle.dumps(conv)), pickle.loads(pickle.dumps(linear))),
    ]
    for conv_copy, linear_copy in copies:
        assert conv_copy.call_cache == {} and conv_copy.bits is not conv.bits
        got = (engine.xnor_conv2d(x, conv_copy, padding=1), engine.xnor_linear(rows, linear_copy),
               engine.bwn_linear(rows, linear_copy))  # fmt: skip
        for a, b in zip(got, expected, strict=True):
            assert torch.equal(a, b)
        assert torch.equal(conv_copy.to_state()["bits"], conv.to_state()["bits"])
    if engine.info()["backend"] == "native":
        assert len(conv.call_cache) == 1  # the original keeps its caches
        assert len(copies[0][0].call_cache) == 1


def test_from_state_rejects_inconsistent_states() -> None:
    state = engine.pack_conv2d_weight(torch.randn(4, 10, 3, 3)).to_state()
    with pytest.raises(KernelInputError, match="needs the tensors"):
        engine.PackedConv2dWeight.from_state({"bits": state["bits"]})
    with pytest.raises(KernelInputError, match="shape"):
        engine.PackedConv2dWeight.from_state({**state, "bits": state["bits"][:, :4]})
    with pytest.raises(KernelInputError, match="padding bits"):
        bad = state["bits"].clone()
        bad[0, 0, 0] = -1  # all 64 bits set but only 10 channels exist
        engine.PackedConv2dWeight.from_state({**state, "bits": bad})
    with pytest.raises(KernelInputError, match="alpha"):
        engine.PackedConv2dWeight.from_state({**state, "alpha": torch.full((4,), float("nan"))})
    with pytest.raises(KernelTypeError, match="not a tensor"):
        engine.PackedConv2dWeight.from_state({**state, "alpha": [1.0, 2.0]})  # type: ignore[dict-item]
    with pytest.raises(KernelInputError, match="rank-4"):
        engine.PackedConv2dWeight.from_state({**state, "shape": torch.tensor([4, 10])})
    with pytest.raises(KernelInputError, match="too many inputs per output"):
        shape = torch.tensor([4, 2**30, 3, 3])  # K = C * kh * kw does not fit int32
        engine.PackedConv2dWeight.from_state({**state, "shape": shape})


def test_nan_weight_is_packed_as_plus_one_with_a_warning() -> None:
    weight = -torch.ones(2, 3, 1, 1)
    weight[0, 1, 0, 0] = float("nan")
    with pytest.warns(NaNInputWarning):
        state = engine.pack_conv2d_weight(weight).to_state()
    assert _unsigned(state["bits"][0, 0]) == [0b101]
    assert _unsigned(state["bits"][1, 0]) == [0b111]
