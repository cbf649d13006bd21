"""Run the XNOR / BWN layers of a wrapped model through the native engine.

``BinConv2d`` / ``BinLinear`` (``xnorlab.binary.layers``) call :func:`native_layer_forward` when
their ``config.backend`` is ``NATIVE`` and autograd is off. The layer's weight is packed once
into ``layer.native_cache`` and repacked only when the weight or bias changed (tensor identity,
``data_ptr`` or the in-place version counter ``_version``). Layers the engine does not cover
return None and run in the torch simulation: grouped convs, ``padding_mode != "zeros"``,
unbatched or non-CPU / non-float inputs, BWN convs (BWN conv is float arithmetic on
``alpha * sign(W)``, which torch already does at full speed).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from xnorlab.binary.layers import BinarizableLayer, BinConv2d, BinLinear, register_native_forward
from xnorlab.binary.modes import Backend, Mode
from xnorlab.binary.surgery import layer_configs, wrapped_layers
from xnorlab.engine import bwn_linear, xnor_conv2d, xnor_linear
from xnorlab.engine._backend import native_module
from xnorlab.engine.packed import (
    PackedConv2dWeight,
    PackedLinearWeight,
    pack_conv2d_weight,
    pack_linear_weight,
)

Packed = PackedConv2dWeight | PackedLinearWeight


@dataclass
class NativeCache:
    """What ``layer.native_cache`` holds: the packed weight and the identity it was built from."""

    key: tuple[Any, ...]
    packed: Packed


def _tensor_key(tensor: Tensor | None) -> tuple[Any, ...]:
    if tensor is None:
        return (None,)
    # Inference tensors (made under torch.inference_mode) have no version counter; they can
    # only change in place inside inference mode, where the cache cannot see it.
    version = None if tensor.is_inference() else tensor._version
    return (id(tensor), tensor.data_ptr(), version, tuple(tensor.shape), tensor.dtype)


def _cache_key(layer: BinarizableLayer) -> tuple[Any, ...]:
    return (type(layer).__name__, *_tensor_key(layer.weight), *_tensor_key(layer.bias))


def packed_weight(layer: BinarizableLayer) -> Packed:
    """The layer's packed weight, repacked only if the weight or bias changed since last time."""
    key = _cache_key(layer)
    cache = layer.native_cache
    if isinstance(cache, NativeCache) and cache.key == key:
        return cache.packed
    weight = layer.weight.detach()
    bias = None if layer.bias is None else layer.bias.detach()
    packed: Packed
    if isinstance(layer, BinConv2d):
        packed = pack_conv2d_weight(weight, bias)
    else:
        packed = pack_linear_weight(weight, bias)
    layer.native_cache = NativeCache(key, packed)
    return packed


def _usable_input(x: Any, rank: int) -> bool:
    return (
        isinstance(x, Tensor) and x.device.type == "cpu" and x.is_floating_point()
        and x.dim() == rank and x.numel() > 0
    )  # fmt: skip


def _conv_forward(layer: BinConv2d, x: Tensor) -> Tensor | None:
    if layer.config.mode is not Mode.XNOR or layer.groups != 1:
        return None
    if layer.padding_mode != "zeros" or not _usable_input(x, 4):
        return None
    packed = packed_weight(layer)
    assert isinstance(packed, PackedConv2dWeight)
    return xnor_conv2d(
        x, packed, None, layer.stride, layer.padding, layer.dilation,
        pad_mode=layer.config.pad_mode, scaling=layer.config.scaling,
    )  # fmt: skip


def _linear_forward(layer: BinLinear, x: Tensor) -> Tensor | None:
    if not isinstance(x, Tensor) or x.dim() < 1 or not _usable_input(x, x.dim()):
        return None
    if layer.config.mode not in (Mode.XNOR, Mode.BWN):
        return None
    packed = packed_weight(layer)
    assert isinstance(packed, PackedLinearWeight)
    if layer.config.mode is Mode.XNOR:
        return xnor_linear(x, packed, None, scaling=layer.config.scaling)
    return bwn_linear(x, packed)


def native_layer_forward(layer: BinarizableLayer, x: Tensor) -> Tensor | None:
    """Inference of one wrapped layer in the engine, or None to use the torch simulation."""
    if native_module() is None:
        return None
    if isinstance(layer, BinConv2d):
        return _conv_forward(layer, x)
    if isinstance(layer, BinLinear):
        return _linear_forward(layer, x)
    return None


def _wrapped(model: nn.Module) -> Iterator[BinarizableLayer]:
    for module in model.modules():
        if isinstance(module, BinarizableLayer):
            yield module


def set_backend(model: nn.Module, backend: Backend | str) -> dict[str, Backend]:
    """Set ``backend`` on every wrapped layer; returns the previous backend per layer name."""
    wanted = Backend.parse(backend)
    previous: dict[str, Backend] = {}
    for name, module in model.named_modules():
        if isinstance(module, BinarizableLayer):
            previous[name] = module.config.backend
            module.configure(backend=wanted)
    return previous


def channels_last_input(x: Any) -> Any:
    """``x`` in channels_last memory when it is a 4-D float tensor (values unchanged), else
    ``x`` itself."""
    if isinstance(x, Tensor) and x.dim() == 4 and x.is_floating_point():
        return x.contiguous(memory_format=torch.channels_last)
    return x


class ChannelsLastInput(nn.Module):
    """:func:`channels_last_input` as a module: a deployed graph's first node, which its
    copies and pickles keep (a GraphModule copy drops forward hooks, and unpickling traces the
    graph's code again, keeping submodules as calls but not plain functions)."""

    def forward(self, x: Any) -> Any:
        return channels_last_input(x)


def channels_last_hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """Forward pre-hook: a 4-D float input goes in channels_last memory (values unchanged)."""
    if args and isinstance(args[0], Tensor) and args[0].dim() == 4 and args[0].is_floating_point():
        return (channels_last_input(args[0]), *args[1:])
    return None


@contextmanager
def native_backend(model: nn.Module, channels_last_input: bool = True) -> Iterator[nn.Module]:
    """Run every wrapped layer of ``model`` natively inside the block; restore on exit.

    The engine writes its outputs in channels_last memory; with ``channels_last_input`` the
    model's 4-D input is put in channels_last too (a pre-hook, removed on exit), so the float
    layers and residual adds between native layers do not convert memory formats back and
    forth. A model without XNOR convs (all float, or BWN only) keeps its input as given: there
    the hook would only change torch's own conv layout, which is slower for it
    (benchmarks/RESULTS.md has both measurements).
    """
    native = {n: m.config.updated(backend=Backend.NATIVE) for n, m in wrapped_layers(model).items()}
    xnor_convs = any(isinstance(m, BinConv2d) and m.mode is Mode.XNOR for m in model.modules())
    wanted = channels_last_input and xnor_convs
    hook = model.register_forward_pre_hook(channels_last_hook) if wanted else None
    try:
        with layer_configs(model, native):
            yield model
    finally:
        if hook is not None:
            hook.remove()


register_native_forward(native_layer_forward)
