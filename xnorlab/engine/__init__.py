"""The bit-packed XNOR engine: native C++ kernels (AVX-512 / AVX2 / scalar) with a pure-PyTorch
reference (``xnorlab.engine.reference``) of identical semantics.

Functions take a float input and return a float output; ``weight`` is a float tensor (packed on
the fly) or a packed object from :func:`pack_conv2d_weight` / :func:`pack_linear_weight` (packed
once, the fast path). Semantics are those of ``xnorlab.binary.binarize``:

* ``sign(x) = +1`` for ``x >= 0`` (also for ``-0.0``), ``-1`` otherwise; NaN -> +1 with a
  ``NaNInputWarning`` (like the core); the K map / beta of a NaN input is NaN, as in the core.
* ``xnor_conv2d``: ``(pad(sign(x)) (*) sign(W)) * alpha * S + bias``, ``alpha = mean |W|`` per
  filter, ``S`` = K map (``kmap``), ``mean |x_n|`` (``scalar``) or 1 (``none``); ``zero``
  padding adds 0, ``one`` padding +1. With ``scaling="none"`` and ``alpha = 1`` the result equals
  ``F.conv2d(sign(x), sign(W), ...)`` exactly.
* ``groups > 1`` runs in the reference (the engine packs channels of one group per word row;
  grouped layers are small and rare in the nets we target).
* Conv outputs are returned in ``channels_last`` memory format (the engine writes NHWC, which
  the next layer's packing reads directly); values and shape are the usual NCHW ones.
* Inputs of any float dtype are computed in float32 and returned in the input's dtype.
* Inference only: outputs carry no autograd graph (train with ``xnorlab.binary.binarize``).

Engine controls: :func:`info`, :func:`set_isa`, :func:`set_threads`, :func:`get_threads`,
``XNORLAB_KERNEL=reference``, ``XNORLAB_ISA``, ``XNORLAB_THREADS``; timing with :func:`profile`;
the micro-kernel's own rate (the bare popcount loop) with :func:`microkernel_rate`.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import torch
from torch import Tensor

from xnorlab.binary.binarize import NaNInputWarning
from xnorlab.binary.modes import InputScaling, PadMode
from xnorlab.engine import reference
from xnorlab.engine._backend import (
    get_threads,
    info,
    microkernel_rate,
    native_module,
    set_isa,
    set_threads,
)
from xnorlab.engine._checks import (
    ConvGeometry,
    as_float32,
    check_groups,
    check_input,
    conv_geometry,
    parse_pad_mode,
    parse_scaling,
)
from xnorlab.engine.errors import KernelConfigError, KernelInputError, KernelTypeError
from xnorlab.engine.packed import (
    PackedConv2dWeight,
    PackedLinearWeight,
    _check_bias,
    pack_conv2d_weight,
    pack_linear_weight,
)
from xnorlab.engine.profiling import KernelTiming, is_profiling, profile, record

__all__ = [
    "KernelConfigError",
    "KernelInputError",
    "KernelTiming",
    "KernelTypeError",
    "PackedConv2dWeight",
    "PackedLinearWeight",
    "bwn_linear",
    "get_threads",
    "info",
    "microkernel_rate",
    "pack_conv2d_weight",
    "pack_linear_weight",
    "profile",
    "reference",
    "set_isa",
    "set_threads",
    "xnor_conv2d",
    "xnor_linear",
]

_SCALING_CODE = {InputScaling.KMAP: 0, InputScaling.SCALAR: 1, InputScaling.NONE: 2}
_NAN_MESSAGE = "sign(): input contains NaN; NaN is binarized to +1"


def _padded_bias(packed: PackedConv2dWeight | PackedLinearWeight, bias: Any) -> Tensor:
    """Bias vector padded to whole 32-channel blocks (explicit ``bias`` overrides the packed)."""
    checked = _check_bias(bias, packed.out_channels)
    if checked is None:
        return packed.bias_padded
    out = torch.zeros_like(packed.bias_padded)
    out[: packed.out_channels] = checked
    return out


def _record(op: str, shapes: tuple[Any, Any, Any], macs: int, split: Any, start: float) -> None:
    total = time.perf_counter() - start
    pack_s, popcount_s, scale_s, _ = split
    native = native_module()
    record(
        KernelTiming(
            op, tuple(shapes[0]), tuple(shapes[1]), tuple(shapes[2]), macs,
            str(native.active_isa()) if native is not None else "reference", get_threads(),
            pack_s, popcount_s, scale_s, max(0.0, total - pack_s - popcount_s - scale_s), total,
        )
    )  # fmt: skip


def _conv_params(x: Tensor, channels_last: bool, packed: PackedConv2dWeight, geo: ConvGeometry,
                 pad_mode: PadMode, scaling: InputScaling) -> list[int]:  # fmt: skip
    """The flat parameter list of ``_native.xnor_conv2d`` up to (excluding) bias and out."""
    n, c, h, w = x.shape
    kh, kw = packed.kernel_size
    left, right, top, bottom = geo.pad4
    return [
        n, c, h, w, int(channels_last), packed.out_channels, kh, kw, geo.stride[0],
        geo.stride[1], top, left, bottom, right, geo.dilation[0], geo.dilation[1], geo.out_h,
        geo.out_w, int(pad_mode is PadMode.ZERO), _SCALING_CODE[scaling], x.data_ptr(),
        *packed.pointers,
    ]  # fmt: skip


def _run_conv(native: Any, params: list[int], bias: Tensor, out: Tensor) -> Any:
    params.append(bias.data_ptr())
    params.append(out.data_ptr())
    has_nan, split = native.xnor_conv2d(params)
    if has_nan:
        warnings.warn(_NAN_MESSAGE, NaNInputWarning, stacklevel=3)
    return split


_X_PARAM = 20  # index of the input address in the native parameter list
_CALLS_CACHED_PER_WEIGHT = 8


def _plain(value: Any) -> bool:
    """An int, a str or a tuple of ints (bools excluded: ``True == 1`` in a cache key)."""
    kind = type(value)
    return kind is int or kind is str or (kind is tuple and all(type(v) is int for v in value))


def _call_key(x: Any, stride: Any, padding: Any, dilation: Any, pad_mode: Any,
              scaling: Any) -> tuple[Any, ...] | None:  # fmt: skip
    """Key under which a float32 CPU call's validated parameters are reused, or None."""
    if type(x) is not Tensor or x.dtype is not torch.float32 or not x.is_cpu:
        return None
    if x.is_contiguous():
        channels_last = False
    elif x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        channels_last = True
    else:
        return None
    settings = (stride, padding, dilation, pad_mode, scaling)
    if not all(_plain(v) or isinstance(v, (PadMode, InputScaling)) for v in settings):
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
) -> Tensor:
    """XNOR conv2d, ``(pad(sign(x)) (*) sign(W)) * alpha[c] * S + bias`` (see module doc).

    Calls repeating an earlier call's input shape, layout and settings on the same packed
    weight reuse its validated native parameters (the per-call work is then the output
    allocation and the native call).
    """
    start = time.perf_counter()
    key = None
    if type(weight) is PackedConv2dWeight and type(groups) is int and groups == 1:
        key = _call_key(x, stride, padding, dilation, pad_mode, scaling)
        cached = weight.call_cache.get(key) if key is not None else None
        if cached is not None:
            native, prefix, out_shape = cached
            params = list(prefix)
            params[_X_PARAM] = x.data_ptr()
            out = torch.empty(out_shape, dtype=torch.float32)
            split = _run_conv(native, params, _padded_bias(weight, bias), out)
            result = out.permute(0, 3, 1, 2)
            if is_profiling():
                _record_conv(x, weight, result, split, start)
            return result
    x = check_input(x, 4, 4, "xnor_conv2d")
    mode, pad = parse_scaling(scaling), parse_pad_mode(pad_mode)
    native = native_module()
    if check_groups(groups) != 1 or native is None:
        return reference.xnor_conv2d(x, weight, bias, stride, padding, dilation, pad.value,
                                     mode.value, groups)  # fmt: skip
    packed = _as_packed_conv(weight)
    if int(x.shape[1]) != packed.in_channels:
        raise KernelInputError(
            f"xnor_conv2d: input has {x.shape[1]} channels, weight expects {packed.in_channels}"
        )
    geo = conv_geometry(x.shape, packed.kernel_size, stride, padding, dilation)
    x32, channels_last = as_float32(x)
    n = int(x.shape[0])
    out_shape = (n, geo.out_h, geo.out_w, packed.out_channels)
    out = torch.empty(out_shape, dtype=torch.float32)
    params = _conv_params(x32, channels_last, packed, geo, pad, mode)
    if key is not None:
        if len(packed.call_cache) >= _CALLS_CACHED_PER_WEIGHT:
            packed.call_cache.clear()
        packed.call_cache[key] = (native, tuple(params), out_shape)
    split = _run_conv(native, params, _padded_bias(packed, bias), out)
    result = out.permute(0, 3, 1, 2)
    if is_profiling():
        _record_conv(x, packed, result, split, start)
    return result if x.dtype == torch.float32 else result.to(x.dtype)


def _record_conv(
    x: Tensor, packed: PackedConv2dWeight, result: Tensor, split: Any, start: float
) -> None:
    macs = result.numel() * packed.in_channels * packed.taps
    shapes = (x.shape, (packed.out_channels, packed.in_channels, *packed.kernel_size),
              result.shape)  # fmt: skip
    _record("xnor_conv2d", shapes, macs, split, start)


def _as_packed_linear(weight: Any) -> PackedLinearWeight:
    if isinstance(weight, PackedLinearWeight):
        return weight
    if isinstance(weight, PackedConv2dWeight):
        raise KernelTypeError("got a packed conv weight; use pack_linear_weight for Linear layers")
    return pack_linear_weight(weight)


def _linear_rows(x: Tensor, packed: PackedLinearWeight, what: str) -> Tensor:
    if int(x.shape[-1]) != packed.in_features:
        raise KernelInputError(
            f"{what}: input's last dim is {x.shape[-1]}, weight expects {packed.in_features}"
        )
    x32, _ = as_float32(x.reshape(-1, packed.in_features))
    return x32


def xnor_linear(
    x: Tensor,
    weight: Tensor | PackedLinearWeight,
    bias: Tensor | None = None,
    scaling: InputScaling | str = "kmap",
) -> Tensor:
    """XNOR Linear, ``(sign(x) @ sign(W)^T) * alpha[o] * beta + bias`` on the last dim of ``x``.

    ``beta = mean |x|`` over the features of each row for ``kmap`` and ``scalar``, 1 for
    ``none`` (as ``xnorlab.binary.binarize.xnor_linear``). Runs as a 1x1 binary conv (binary GEMM).
    """
    start = time.perf_counter()
    x = check_input(x, 1, 8, "xnor_linear")
    mode = parse_scaling(scaling)
    native = native_module()
    if native is None:
        return reference.xnor_linear(x, weight, bias, mode.value)
    packed = _as_packed_linear(weight)
    rows = _linear_rows(x, packed, "xnor_linear")
    m = int(rows.shape[0])
    out = torch.empty((m, packed.out_features), dtype=torch.float32)
    code = _SCALING_CODE[InputScaling.NONE if mode is InputScaling.NONE else InputScaling.KMAP]
    params = [
        1, packed.in_features, m, 1, 1, packed.out_features, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, m, 1,
        1, code, rows.data_ptr(), *packed.pointers,
    ]  # fmt: skip
    split = _run_conv(native, params, _padded_bias(packed, bias), out)
    result = out.reshape(*x.shape[:-1], packed.out_features)
    if is_profiling():
        shapes = (x.shape, (packed.out_features, packed.in_features), result.shape)
        _record("xnor_linear", shapes, out.numel() * packed.in_features, split, start)
    return result if x.dtype == torch.float32 else result.to(x.dtype)


def bwn_linear(
    x: Tensor,
    weight: Tensor | PackedLinearWeight,
    bias: Tensor | None = None,
) -> Tensor:
    """BWN Linear: ``x @ (alpha * sign(W))^T + bias``, float ``x``, 1 bit read per weight.

    Computed as ``alpha[o] * (sum_f x_f - 2 * sum_{f: W_of < 0} x_f) + bias[o]``.
    """
    start = time.perf_counter()
    x = check_input(x, 1, 8, "bwn_linear")
    native = native_module()
    if native is None:
        return reference.bwn_linear(x, weight, bias)
    packed = _as_packed_linear(weight)
    rows = _linear_rows(x, packed, "bwn_linear")
    m = int(rows.shape[0])
    out = torch.empty((m, packed.out_features), dtype=torch.float32)
    bias_padded = _padded_bias(packed, bias)  # a name keeps the buffer alive during the call
    split = native.bwn_linear(
        rows.data_ptr(), m, packed.in_features, packed.bits.data_ptr(),
        packed.alpha_padded.data_ptr(), bias_padded.data_ptr(), packed.out_features,
        out.data_ptr(),
    )  # fmt: skip
    result = out.reshape(*x.shape[:-1], packed.out_features)
    if is_profiling():
        shapes = (x.shape, (packed.out_features, packed.in_features), result.shape)
        _record("bwn_linear", shapes, out.numel() * packed.in_features, split, start)
    return result if x.dtype == torch.float32 else result.to(x.dtype)
