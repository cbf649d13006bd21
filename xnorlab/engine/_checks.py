"""Validation of facade arguments: every size the C++ engine sees is checked here first."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import Tensor

from xnorlab.binary.binarize import conv_pad4
from xnorlab.binary.modes import InputScaling, PadMode
from xnorlab.engine.errors import KernelInputError, KernelTypeError

# The engine's size limits (the same numbers as native/include/xnorlab/engine.h): every size,
# geometry parameter and padded extent fits int32, the kernels' argument type; every buffer the
# engine reads, writes or allocates holds at most 2^32 elements, so absurd sizes fail here with
# one clear error instead of reaching the allocator.
MAX_DIM = (1 << 31) - 1
MAX_ELEMENTS = 1 << 32


def check_input(x: Any, min_rank: int, max_rank: int, what: str) -> Tensor:
    """A CPU float tensor of rank in ``[min_rank, max_rank]`` with no empty dimension."""
    if not isinstance(x, Tensor):
        raise KernelTypeError(f"{what}: input must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise KernelTypeError(f"{what}: input must be a float tensor, got {x.dtype}")
    if x.device.type != "cpu":
        raise KernelInputError(f"{what}: input must be on the CPU, got {x.device}")
    if not min_rank <= x.dim() <= max_rank:
        rank = f"{min_rank}" if min_rank == max_rank else f"{min_rank}..{max_rank}"
        raise KernelInputError(f"{what}: input must have {rank} dims, got {tuple(x.shape)}")
    if x.numel() == 0:
        raise KernelInputError(f"{what}: input is empty, shape {tuple(x.shape)}")
    if max(x.shape) > MAX_DIM or x.numel() > MAX_ELEMENTS:
        raise KernelInputError(f"{what}: input too large, shape {tuple(x.shape)}")
    return x


def check_elements(shape: Sequence[int], what: str) -> None:
    """Raise if a buffer of ``shape`` would hold more than ``MAX_ELEMENTS`` elements."""
    if math.prod(shape) > MAX_ELEMENTS:
        raise KernelInputError(
            f"{what} {tuple(shape)} is too large (more than {MAX_ELEMENTS} elements)"
        )


def check_linear_sizes(x: Tensor, out_features: int, what: str) -> None:
    """Bound the rows ``M`` (all dims of ``x`` but the last), the output ``(M, out_features)``
    and the rows padded to whole 64-bit words, before anything is allocated."""
    features = int(x.shape[-1])
    rows = x.numel() // features
    if rows > MAX_DIM:
        raise KernelInputError(f"{what}: {rows} input rows are too many (at most {MAX_DIM})")
    check_elements((rows, out_features), f"{what}: output")
    check_elements((rows, -(-features // 64), 64), f"{what}: padded input")


def as_float32(x: Tensor, prefer_nhwc: bool = False) -> tuple[Tensor, bool]:
    """``(x in float32 NCHW- or NHWC-contiguous memory, channels_last)``; memory that is both
    (one channel or one pixel) counts as NHWC if ``prefer_nhwc``."""
    x = x.detach()
    if x.dtype != torch.float32:
        x = x.to(torch.float32)
    if (
        x.dim() == 4
        and (prefer_nhwc or not x.is_contiguous())
        and x.is_contiguous(memory_format=torch.channels_last)
    ):
        return x, True
    return x.contiguous(), False


def as_pair(value: Any, name: str, minimum: int) -> tuple[int, int]:
    """``value`` (an int or two) as a pair of ints in ``minimum..MAX_DIM``."""
    if type(value) is int and minimum <= value <= MAX_DIM:  # fast path of the common case
        return (value, value)
    try:
        items = [value, value] if isinstance(value, int) else list(value)
    except TypeError:
        items = []
    if (
        len(items) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) for v in items)
        or any(v < minimum or v > MAX_DIM for v in items)
    ):
        raise KernelInputError(
            f"{name} must be an int or a pair of ints >= {minimum}, got {value!r}"
        )
    return (items[0], items[1])


@dataclass(frozen=True)
class ConvGeometry:
    """Validated conv geometry; ``pad4`` is ``(left, right, top, bottom)``."""

    stride: tuple[int, int]
    dilation: tuple[int, int]
    pad4: tuple[int, int, int, int]
    out_h: int
    out_w: int


def conv_geometry(
    x_shape: Sequence[int],
    kernel_size: tuple[int, int],
    out_channels: int,
    stride: Any,
    padding: Any,
    dilation: Any,
) -> ConvGeometry:
    """Validated geometry (cached for hashable arguments: layers call with the same ones)."""
    args = (kernel_size, out_channels, stride, padding, dilation)
    if any(isinstance(v, bool) for v in (stride, padding, dilation)):  # True == 1 in a cache key
        return _conv_geometry(x_shape, *args)
    try:
        return _conv_geometry_cached(tuple(x_shape), *args)
    except TypeError:  # unhashable (a list): validate without the cache
        return _conv_geometry(x_shape, *args)


@functools.lru_cache(maxsize=512)
def _conv_geometry_cached(
    x_shape: tuple[int, ...],
    kernel_size: tuple[int, int],
    out_channels: int,
    stride: Any,
    padding: Any,
    dilation: Any,
) -> ConvGeometry:
    return _conv_geometry(x_shape, kernel_size, out_channels, stride, padding, dilation)


def _conv_geometry(
    x_shape: Sequence[int],
    kernel_size: tuple[int, int],
    out_channels: int,
    stride: Any,
    padding: Any,
    dilation: Any,
) -> ConvGeometry:
    """Output size ``floor((H + pads - d*(k-1) - 1) / s) + 1``; raises if it would be < 1 or
    if the padded input or the output ``(N, C_out, H_out, W_out)`` would be too large."""
    stride2 = as_pair(stride, "stride", 1)
    dilation2 = as_pair(dilation, "dilation", 1)
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise KernelInputError(
                f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}"
            )
        if padding == "same" and stride2 != (1, 1):
            raise KernelInputError("padding='same' needs stride 1 (as in PyTorch)")
        pad4 = conv_pad4(padding, kernel_size, dilation2)
    else:
        pad_h, pad_w = as_pair(padding, "padding", 0)
        pad4 = (pad_w, pad_w, pad_h, pad_h)
    batch, channels, height, width = (int(v) for v in x_shape)
    padded_h, padded_w = height + pad4[2] + pad4[3], width + pad4[0] + pad4[1]
    if max(padded_h, padded_w) > MAX_DIM:
        raise KernelInputError(f"padded input {padded_h}x{padded_w} is too large")
    span_h = dilation2[0] * (kernel_size[0] - 1) + 1
    span_w = dilation2[1] * (kernel_size[1] - 1) + 1
    if padded_h < span_h or padded_w < span_w:
        raise KernelInputError(
            f"kernel {kernel_size} with dilation {dilation2} does not fit the padded input "
            f"{height}x{width} (padding {pad4})"
        )
    out_h, out_w = (padded_h - span_h) // stride2[0] + 1, (padded_w - span_w) // stride2[1] + 1
    check_elements((batch, out_channels, out_h, out_w), "conv output")
    # the engine packs the padded input into 64-bit words of channels
    check_elements((batch, padded_h, padded_w, -(-channels // 64)), "padded input (words)")
    return ConvGeometry(stride2, dilation2, pad4, out_h, out_w)


_SCALINGS = {m.value: m for m in InputScaling} | {m: m for m in InputScaling}
_PAD_MODES = {m.value: m for m in PadMode} | {m: m for m in PadMode}
_Choice = TypeVar("_Choice", InputScaling, PadMode)


def _parse_choice(kind: type[_Choice], table: dict[Any, _Choice], value: Any) -> _Choice:
    """Exact values hit ``table`` (the per-call fast path); others go through ``kind.parse``."""
    fast = table.get(value) if isinstance(value, str) else None
    if fast is not None:
        return fast
    try:
        return kind.parse(value)
    except ValueError as exc:
        raise KernelInputError(str(exc)) from exc


def parse_scaling(scaling: Any) -> InputScaling:
    return _parse_choice(InputScaling, _SCALINGS, scaling)


def parse_pad_mode(pad_mode: Any) -> PadMode:
    return _parse_choice(PadMode, _PAD_MODES, pad_mode)


def check_groups(groups: Any) -> int:
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise KernelInputError(f"groups must be an int >= 1, got {groups!r}")
    return groups
