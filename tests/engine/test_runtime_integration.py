"""A binarized model gives the same output through the engine as in the torch simulation."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

from xnorlab.binary.layers import BinConv2d, BinLinear
from xnorlab.binary.modes import Backend
from xnorlab.binary.surgery import binarize_model
from xnorlab.engine import info
from xnorlab.runtime.integration import native_backend, native_layer_forward, set_backend

pytestmark = pytest.mark.skipif(info()["backend"] != "native", reason="native engine not in use")


def small_net() -> nn.Module:
    # Every binary layer has a bias: a bias-free XNOR output can be an exact 0, where the float
    # simulation's rounding noise (a sum of +-alpha) decides the next layer's sign at random.
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16),
        nn.Conv2d(16, 70, 3, padding=1), nn.BatchNorm2d(70), nn.MaxPool2d(2),
        nn.Conv2d(70, 32, 5, stride=2, padding=2, dilation=2), nn.BatchNorm2d(32),
        nn.Conv2d(32, 32, 3, padding=1, groups=4), nn.Flatten(),
        nn.Linear(32 * 2 * 2, 100), nn.Linear(100, 10),
    ).eval()  # fmt: skip


@pytest.mark.parametrize("scaling", ["kmap", "scalar", "none"])
@pytest.mark.parametrize("pad_mode", ["zero", "one"])
def test_native_model_equals_torch_model(isa: str, scaling: str, pad_mode: str) -> None:
    model = small_net()
    modes = {"0": "float", "2": "xnor", "5": "xnor", "7": "xnor", "9": "bwn", "10": "float"}
    binarize_model(model, modes, scaling=scaling, pad_mode=pad_mode)
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        expected = model(x)
        with native_backend(model):
            got = model(x)
            packed = [m.native_cache for m in model.modules() if isinstance(m, BinConv2d)]
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
    assert packed[1] is not None and packed[3] is None  # groups=4 fell back to torch
    assert all(m.config.backend is Backend.TORCH for m in model.modules()
               if isinstance(m, (BinConv2d, BinLinear)))  # fmt: skip


def test_a_model_deep_copies_and_pickles_after_native_forwards() -> None:
    model = small_net()
    binarize_model(model, {"2": "xnor", "5": "bwn", "7": "xnor", "9": "xnor"})
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad(), native_backend(model):
        expected = model(x)  # fills the packed weights' native caches
        for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
            with native_backend(twin):
                assert torch.equal(twin(x), expected)


def test_weights_are_packed_once_and_repacked_after_a_change() -> None:
    layer = BinConv2d(nn.Conv2d(8, 16, 3, padding=1))
    layer.configure(mode="xnor", backend="native")
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        first = layer(x)
        cache = layer.native_cache
        layer(x)
        assert layer.native_cache is cache  # unchanged weight: no repack
        layer.weight.mul_(-1.0)  # in-place change bumps the version counter
        flipped = layer(x)
        assert layer.native_cache is not cache
        layer.configure(backend="torch")
        torch.testing.assert_close(flipped, layer(x), rtol=1e-5, atol=1e-4)
    assert not torch.allclose(first, flipped)


def test_unsupported_layers_and_grad_fall_back_to_torch() -> None:
    reflect = BinConv2d(nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"))
    reflect.configure(mode="xnor", backend="native")
    assert native_layer_forward(reflect, torch.randn(1, 4, 5, 5)) is None
    unbatched = BinConv2d(nn.Conv2d(4, 4, 3))
    unbatched.configure(mode="xnor", backend="native")
    assert native_layer_forward(unbatched, torch.randn(4, 5, 5)) is None
    linear = BinLinear(nn.Linear(6, 3))
    linear.configure(mode="xnor", backend="native")
    x = torch.randn(2, 6, requires_grad=True)
    linear(x).sum().backward()  # grad enabled: torch path, gradients flow
    assert x.grad is not None and linear.native_cache is None


def test_native_backend_restores_on_error() -> None:
    model = small_net()
    binarize_model(model, "paper")
    set_backend(model, "torch")
    with pytest.raises(RuntimeError, match="boom"), native_backend(model):
        assert all(m.config.backend is Backend.NATIVE for m in model.modules()
                   if isinstance(m, (BinConv2d, BinLinear)))  # fmt: skip
        raise RuntimeError("boom")
    assert all(m.config.backend is Backend.TORCH for m in model.modules()
               if isinstance(m, (BinConv2d, BinLinear)))  # fmt: skip
    assert not model._forward_pre_hooks  # the channels_last input hook is gone too


def test_channels_last_input_hook_changes_memory_format_only() -> None:
    model = small_net()
    binarize_model(model, {"2": "xnor", "5": "xnor"})
    x = torch.randn(2, 3, 16, 16)
    seen: list[bool] = []
    model[0].register_forward_pre_hook(
        lambda _m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    with torch.no_grad():
        with native_backend(model, channels_last_input=False):
            plain = model(x)
        with native_backend(model):
            hooked = model(x)
    assert seen == [False, True]
    torch.testing.assert_close(hooked, plain, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("modes", ["float", {"2": "bwn", "5": "bwn"}])
def test_models_without_xnor_convs_keep_their_input_layout(modes: object) -> None:
    model = small_net()
    binarize_model(model, modes)
    seen: list[bool] = []
    model[0].register_forward_pre_hook(
        lambda _m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    with torch.no_grad(), native_backend(model):
        assert not model._forward_pre_hooks  # no channels_last input hook was added
        model(torch.randn(2, 3, 16, 16))
    assert seen == [False]


def test_weights_made_in_inference_mode_run_natively() -> None:
    with torch.inference_mode():
        conv = nn.Conv2d(8, 16, 3, padding=1)
        conv.weight = nn.Parameter(conv.weight.to(memory_format=torch.channels_last))
    layer = BinConv2d(conv)
    layer.configure(mode="xnor", backend="native")
    x = torch.randn(2, 8, 6, 6)
    with torch.inference_mode():
        got = layer(x)
        assert layer.native_cache is not None
        layer.configure(backend="torch")
        expected = layer(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)
