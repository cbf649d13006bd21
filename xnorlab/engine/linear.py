"""``xnor_linear`` and ``bwn_linear``: the binary Linear layers through the native engine (or
its reference), the validated call cached per input shape on the packed weight."""

from __future__ import annotations

import time
import warnings
from typing import Any

import torch
from torch import Tensor

from xnorlab.binary.binarize import NaNInputWarning
from xnorlab.binary.modes import InputScaling
from xnorlab.engine import reference
from xnorlab.engine._backend import native_module
from xnorlab.engine._calls import (
    NAN_MESSAGE,
    buffers,
    native_error,
    padded_bias,
    plain_setting,
    record_call,
    remember,
)
from xnorlab.engine._checks import as_float32, check_input, check_linear_sizes, parse_scaling
from xnorlab.engine.errors import KernelInputError, KernelTypeError
from xnorlab.engine.fused import numpy_view
from xnorlab.engine.packed import PackedConv2dWeight, PackedLinearWeight, pack_linear_weight
from xnorlab.engine.profiling import is_profiling


def _as_packed_linear(weight: Any) -> PackedLinearWeight:
    if isinstance(weight, PackedLinearWeight):
        return weight
    if isinstance(weight, PackedConv2dWeight):
        raise KernelTypeError("got a packed conv weight; use pack_linear_weight for Linear layers")
    return pack_linear_weight(weight)


def _out_features(weight: Any) -> int | None:
    if isinstance(weight, PackedLinearWeight):
        return weight.out_features
    if isinstance(weight, Tensor) and weight.dim() == 2:
        return int(weight.shape[0])
    return None  # the packing reports what is wrong with it


# A Linear call ready to run: the op's name, the native function, the weight's PackedBuffers
# and the scaling's name (None for BWN, which has no input scale).
_LinearCall = tuple[str, Any, Any, str | None]


def _linear_key(op: str, x: Any, scaling: Any) -> tuple[Any, ...] | None:
    """Key under which a float32 CPU Linear call's validated setup is reused, or None."""
    if type(x) is not Tensor or x.dtype is not torch.float32 or not x.is_cpu:
        return None
    if not x.is_contiguous():
        return None
    if not (scaling is None or plain_setting(scaling) or isinstance(scaling, InputScaling)):
        return None
    return (op, tuple(x.shape), scaling)


def _run_linear(call: _LinearCall, x: Tensor, packed: PackedLinearWeight, bias: Any,
                start: float) -> Tensor:  # fmt: skip
    """Run ``call`` on the float32 input ``x`` (..., F); returns the float32 output (..., O)."""
    op, fn, buffers, scaling = call
    bias_array = padded_bias(packed, bias)
    args = (buffers, numpy_view(x)) if scaling is None else (buffers, numpy_view(x), scaling)
    try:
        result = fn(*args, bias_array)
    except (ValueError, TypeError) as exc:
        raise native_error(exc) from exc
    if len(result) == 3 and result[1]:  # xnor_linear's input_has_nan
        warnings.warn(NAN_MESSAGE, NaNInputWarning, stacklevel=4)
    out = torch.from_numpy(result[0])
    if is_profiling():
        shapes = (x.shape, (packed.out_features, packed.in_features), out.shape)
        record_call(op, shapes, out.numel() * packed.in_features, result[-1], start)
    return out


def _linear(op: str, x: Any, weight: Any, bias: Any, scaling: Any) -> Tensor:
    """The body of :func:`xnor_linear` and of :func:`bwn_linear` (``scaling`` None)."""
    start = time.perf_counter()
    key = _linear_key(op, x, scaling) if type(weight) is PackedLinearWeight else None
    cached = weight.call_cache.get(key) if key is not None else None
    if cached is not None:
        return _run_linear(cached, x, weight, bias, start)
    x = check_input(x, 1, 8, op)
    mode = None if scaling is None else parse_scaling(scaling)
    out_features = _out_features(weight)
    if out_features is not None:
        check_linear_sizes(x, out_features, op)
    native = native_module()
    if native is None:
        if mode is None:
            return reference.bwn_linear(x, weight, bias)
        return reference.xnor_linear(x, weight, bias, mode.value)
    packed = _as_packed_linear(weight)
    if int(x.shape[-1]) != packed.in_features:
        raise KernelInputError(
            f"{op}: input's last dim is {x.shape[-1]}, weight expects {packed.in_features}"
        )
    x32, _ = as_float32(x)
    fn = native.bwn_linear if mode is None else native.xnor_linear
    call = (op, fn, buffers(native, packed), None if mode is None else mode.value)
    if key is not None:
        remember(packed, key, call)
    result = _run_linear(call, x32, packed, bias, start)
    return result if x.dtype == torch.float32 else result.to(x.dtype)


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
    return _linear("xnor_linear", x, weight, bias, scaling)


def bwn_linear(
    x: Tensor,
    weight: Tensor | PackedLinearWeight,
    bias: Tensor | None = None,
) -> Tensor:
    """BWN Linear: ``x @ (alpha * sign(W))^T + bias``, float ``x``, 1 bit read per weight.

    Computed as ``alpha[o] * (sum_f x_f - 2 * sum_{f: W_of < 0} x_f) + bias[o]``.
    """
    return _linear("bwn_linear", x, weight, bias, None)
