"""``xnor_conv2d``: the XNOR conv through the native engine (or its reference), with the
validated native call cached per input shape and settings on the packed weight."""

from __future__ import annotations

import time
import warnings
from typing import Any

import torch
from torch import Tensor

from xnorlab.binary.binarize import NaNInputWarning
from xnorlab.binary.modes import InputScaling, PadMode
from xnorlab.engine import reference
from xnorlab.engine._backend import native_module
from xnorlab.engine._calls import (
    NAN_MESSAGE,
    ConvCall,
    buffers,
    conv_params,
    native_error,
    padded_bias,
    plain_setting,
    record_conv,
    remember,
)
from xnorlab.engine._checks import (
    as_float32,
    check_groups,
    check_input,
    conv_geometry,
    parse_pad_mode,
    parse_scaling,
)
from xnorlab.engine.errors import KernelInputError, KernelTypeError
from xnorlab.engine.fused import NO_EPILOGUE, Epilogue, Prologue, numpy_view
from xnorlab.engine.packed import PackedConv2dWeight, PackedLinearWeight, pack_conv2d_weight
from xnorlab.engine.profiling import is_profiling


def _run_conv(call: ConvCall, x: Tensor, packed: PackedConv2dWeight, bias: Any,
              start: float, epilogue: Epilogue = NO_EPILOGUE,
              prologue: Prologue | None = None) -> Tensor:  # fmt: skip
    """Run ``call`` on the float32 input ``x``; returns the channels_last float32 output."""
    conv, params, buffers = call
    bias_array = padded_bias(packed, bias)
    residual = epilogue.residual_array(params.out_shape)
    clamp = epilogue.bounds()
    scale = shift = bounds = None
    if prologue is not None:
        prologue.check(packed.in_channels)
        (scale, shift), bounds = prologue.arrays, prologue.clamp
    try:
        out, has_nan, split = conv(params, buffers, numpy_view(x), bias_array, residual, clamp,
                                   scale, shift, bounds)  # fmt: skip
    except (ValueError, TypeError) as exc:
        raise native_error(exc) from exc
    if has_nan:
        warnings.warn(NAN_MESSAGE, NaNInputWarning, stacklevel=3)
    result = torch.from_numpy(out)
    if is_profiling():
        record_conv(x.shape, packed, result.shape, split, start)
    return result


def _call_key(x: Any, stride: Any, padding: Any, dilation: Any, pad_mode: Any,
              scaling: Any, prefer_nhwc: bool = False) -> tuple[Any, ...] | None:  # fmt: skip
    """Key under which a float32 CPU call's validated parameters are reused, or None."""
    if type(x) is not Tensor or x.dtype is not torch.float32 or not x.is_cpu:
        return None
    nhwc = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
    if nhwc and (prefer_nhwc or not x.is_contiguous()):
        channels_last = True
    elif x.is_contiguous():
        channels_last = False
    else:
        return None
    settings = (stride, padding, dilation, pad_mode, scaling)
    if not all(plain_setting(v) or isinstance(v, (PadMode, InputScaling)) for v in settings):
        return None
    return (tuple(x.shape), channels_last, *settings)


def _as_packed_conv(weight: Any) -> PackedConv2dWeight:
    if isinstance(weight, PackedConv2dWeight):
        return weight
    if isinstance(weight, PackedLinearWeight):
        raise KernelTypeError("xnor_conv2d got a packed Linear weight; use pack_conv2d_weight")
    return pack_conv2d_weight(weight)


def xnor_conv2d(
    x: Tensor,
    weight: Tensor | PackedConv2dWeight,
    bias: Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    pad_mode: PadMode | str = "zero",
    scaling: InputScaling | str = "kmap",
    groups: int = 1,
    epilogue: Epilogue = NO_EPILOGUE,
    prologue: Prologue | None = None,
) -> Tensor:
    """XNOR conv2d, ``(pad(sign(x)) (*) sign(W)) * alpha[c] * S + bias`` (see module doc),
    then ``clamp(out + residual, lo, hi)`` for an :class:`Epilogue` (fused in the engine, per
    tile while it is in cache; the reference adds and clamps afterwards). With a
    :class:`Prologue` the conv takes ``clamp(x * scale + shift, lo, hi)`` for ``x`` (fused into
    the engine's packing pass, which then reads channels_last input: other layouts are copied).

    Calls repeating an earlier call's input shape, layout and settings on the same packed
    weight reuse its validated native parameters (the per-call work is then the native call,
    which checks the input against them and allocates the output).
    """
    start = time.perf_counter()
    key = None
    if prologue is not None:
        x = _channels_last_input(x)
    if type(weight) is PackedConv2dWeight and type(groups) is int and groups == 1:
        key = _call_key(x, stride, padding, dilation, pad_mode, scaling, prologue is not None)
        cached = weight.call_cache.get(key) if key is not None else None
        if cached is not None:
            return _run_conv(cached, x, weight, bias, start, epilogue, prologue)
    x = check_input(x, 4, 4, "xnor_conv2d")
    mode, pad = parse_scaling(scaling), parse_pad_mode(pad_mode)
    native = native_module()
    if check_groups(groups) != 1 or native is None:
        _check_reference_conv(x, weight, stride, padding, dilation)
        if prologue is not None:
            x = prologue.reference(x).to(x.dtype)
        out = reference.xnor_conv2d(x, weight, bias, stride, padding, dilation, pad.value,
                                    mode.value, groups)  # fmt: skip
        return epilogue.reference(out)
    packed = _as_packed_conv(weight)
    if int(x.shape[1]) != packed.in_channels:
        raise KernelInputError(
            f"xnor_conv2d: input has {x.shape[1]} channels, weight expects {packed.in_channels}"
        )
    geo = conv_geometry(x.shape, packed.kernel_size, packed.out_channels, stride, padding,
                        dilation)  # fmt: skip
    x32, channels_last = as_float32(x, prefer_nhwc=prologue is not None)
    params = conv_params(native, x32, channels_last, packed, geo, pad, mode)
    call = (native.xnor_conv2d, params, buffers(native, packed))
    if key is not None:
        remember(packed, key, call)
    result = _run_conv(call, x32, packed, bias, start, epilogue, prologue)
    return result if x.dtype == torch.float32 else result.to(x.dtype)


def _channels_last_input(x: Any) -> Any:
    """A 4-D tensor input in channels_last memory (the prologue's layout); anything else as
    given, for the usual checks to refuse or handle."""
    if (
        isinstance(x, Tensor)
        and x.dim() == 4
        and not x.is_contiguous(memory_format=torch.channels_last)
    ):
        return x.contiguous(memory_format=torch.channels_last)
    return x


def _check_reference_conv(x: Tensor, weight: Any, stride: Any, padding: Any,
                          dilation: Any) -> None:  # fmt: skip
    """The size bounds of the engine, for a conv the reference runs (grouped or no engine)."""
    if isinstance(weight, PackedConv2dWeight):
        conv_geometry(x.shape, weight.kernel_size, weight.out_channels, stride, padding, dilation)
    elif isinstance(weight, Tensor) and weight.dim() == 4:
        kernel = (int(weight.shape[2]), int(weight.shape[3]))
        conv_geometry(x.shape, kernel, int(weight.shape[0]), stride, padding, dilation)
