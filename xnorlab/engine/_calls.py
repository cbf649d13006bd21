"""What every native call of the facade shares: its error mapping, the bias override, the
validated ConvParams, the per-weight call cache and the profile record."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor

from xnorlab.binary.modes import InputScaling, PadMode
from xnorlab.common.errors import XnorlabError
from xnorlab.engine._backend import get_threads, native_module
from xnorlab.engine._checks import ConvGeometry
from xnorlab.engine.errors import KernelInputError, KernelTypeError
from xnorlab.engine.packed import PackedConv2dWeight, PackedLinearWeight, _check_bias
from xnorlab.engine.profiling import KernelTiming, record

NAN_MESSAGE = "sign(): input contains NaN; NaN is binarized to +1"
CALLS_CACHED_PER_WEIGHT = 8


def native_error(exc: Exception) -> XnorlabError:
    """The facade's error for a check the native boundary refused (TypeError: type or dtype)."""
    return KernelTypeError(str(exc)) if isinstance(exc, TypeError) else KernelInputError(str(exc))


def padded_bias(packed: PackedConv2dWeight | PackedLinearWeight, bias: Any) -> Any:
    """None for the packed bias, else ``bias`` padded to whole 32-channel blocks (numpy)."""
    if bias is None:
        return None
    checked = _check_bias(bias, packed.out_channels)
    assert checked is not None
    out = torch.zeros_like(packed.bias_padded)
    out[: packed.out_channels] = checked
    return out.numpy()


def record_call(op: str, shapes: tuple[Any, Any, Any], macs: int, split: Any, start: float,
                total_s: float | None = None, threads: int | None = None) -> None:  # fmt: skip
    """Record a call that started at ``start`` (``total_s``: its wall time, ``threads``: the
    threads it ran on, when the caller knows them better)."""
    total = time.perf_counter() - start if total_s is None else total_s
    pack_s, popcount_s, scale_s, _ = split
    native = native_module()
    record(
        KernelTiming(
            op, tuple(shapes[0]), tuple(shapes[1]), tuple(shapes[2]), macs,
            str(native.active_isa()) if native is not None else "reference",
            get_threads() if threads is None else threads,
            pack_s, popcount_s, scale_s, max(0.0, total - pack_s - popcount_s - scale_s), total,
        )
    )  # fmt: skip


def conv_params(native: Any, x: Tensor, channels_last: bool, packed: PackedConv2dWeight,
                 geo: ConvGeometry, pad_mode: PadMode, scaling: InputScaling) -> Any:  # fmt: skip
    """The native ``ConvParams`` of a call (validated again on the C++ side)."""
    left, right, top, bottom = geo.pad4
    try:
        return native.ConvParams(
            input_shape=tuple(x.shape), channels_last=channels_last,
            out_channels=packed.out_channels, kernel=packed.kernel_size, stride=geo.stride,
            dilation=geo.dilation, pad_top=top, pad_bottom=bottom, pad_left=left,
            pad_right=right, pad_mode=pad_mode.value, scaling=scaling.value,
        )  # fmt: skip
    except (ValueError, TypeError) as exc:
        raise native_error(exc) from exc


# A conv call ready to run: the native function, its ConvParams and the weight's PackedBuffers.
ConvCall = tuple[Any, Any, Any]


def remember(packed: PackedConv2dWeight | PackedLinearWeight, key: Any, call: Any) -> None:
    """Keep ``call`` for ``key`` in the weight's small cache (emptied when full)."""
    if len(packed.call_cache) >= CALLS_CACHED_PER_WEIGHT:
        packed.call_cache.clear()
    packed.call_cache[key] = call


def buffers(native: Any, packed: PackedConv2dWeight | PackedLinearWeight) -> Any:
    try:
        return packed.native_buffers(native)
    except (ValueError, TypeError) as exc:
        raise native_error(exc) from exc


def plain_setting(value: Any) -> bool:
    """An int, a str or a tuple of ints (bools excluded: ``True == 1`` in a cache key)."""
    kind = type(value)
    return kind is int or kind is str or (kind is tuple and all(type(v) is int for v in value))


def record_conv(input_shape: Any, packed: PackedConv2dWeight, out_shape: Any, split: Any,
                start: float, total_s: float | None = None,
                threads: int | None = None) -> None:  # fmt: skip
    """The profile record of one XNOR conv call (``N*H_out*W_out*C_out*C_in*kh*kw`` MACs)."""
    macs = int(torch.Size(out_shape).numel()) * packed.in_channels * packed.taps
    weight_shape = (packed.out_channels, packed.in_channels, *packed.kernel_size)
    record_call("xnor_conv2d", (input_shape, weight_shape, out_shape), macs, split, start, total_s,
                threads)  # fmt: skip
