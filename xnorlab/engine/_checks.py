"""Validation of facade arguments: every size the C++ engine sees is checked here first."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import Tensor

from xnorlab.binary.binarize import conv_pad4
from xnorlab.binary.modes import InputScaling, PadMode
from xnorlab.engine.errors import KernelInputError, KernelTypeError

MAX_DIM = 1 << 31  # any single size or geometry parameter
MAX_ELEMENTS = 1 << 40  # any tensor the engine allocates or reads


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


def as_float32(x: Tensor) -> tuple[Tensor, bool]:
    """``(x in float32 NCHW- or NHWC-contiguous memory, channels_last)``."""
    x = x.detach()
    if x.dtype != torch.float32:
        x = x.to(torch.float32)
    if (
        x.dim() == 4
        and not x.is_contiguous()
        and x.is_contiguous(memory_format=torch.channels_last)
    ):
        return x, True
    return x.contiguous(), False


def _pair(value: Any, name: str, minimum: int) -> tuple[int, int]:
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
    stride: Any,
    padding: Any,
    dilation: Any,
) -> ConvGeometry:
    """Validated geometry (cached for hashable arguments: layers call with the same ones)."""
    if any(isinstance(v, bool) for v in (stride, padding, dilation)):  # True == 1 in a cache key
        return _conv_geometry(x_shape, kernel_size, stride, padding, dilation)
    try:
        return _conv_geometry_cached(tuple(x_shape), kernel_size, stride, padding, dilation)
    except TypeError:  # unhashable (a list): validate without the cache
        return _conv_geometry(x_shape, kernel_size, stride, padding, dilation)


@functools.lru_cache(maxsize=512)
def _conv_geometry_cached(
    x_shape: tuple[int, ...],
    kernel_size: tuple[int, int],
    stride: Any,
    padding: Any,
    dilation: Any,
) -> ConvGeometry:
    return _conv_geometry(x_shape, kernel_size, stride, padding, dilation)


def _conv_geometry(
    x_shape: Sequence[int],
    kernel_size: tuple[int, int],
    stride: Any,
    padding: Any,
    dilation: Any,
) -> ConvGeometry:
    """Output size ``floor((H + pads - d*(k-1) - 1) / s) + 1``; raises if it would be < 1."""
    stride2 = _pair(stride, "stride", 1)
    dilation2 = _pair(dilation, "dilation", 1)
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise KernelInputError(
                f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}"
            )
        if padding == "same" and stride2 != (1, 1):
            raise KernelInputError("padding='same' needs stride 1 (as in PyTorch)")
        pad4 = conv_pad4(padding, kernel_size, dilation2)
    else:
        pad_h, pad_w = _pair(padding, "padding", 0)
        pad4 = (pad_w, pad_w, pad_h, pad_h)
    height, width = int(x_shape[-2]), int(x_shape[-1])
    span_h = dilation2[0] * (kernel_size[0] - 1) + 1
    span_w = dilation2[1] * (kernel_size[1] - 1) + 1
    room_h, room_w = height + pad4[2] + pad4[3] - span_h, width + pad4[0] + pad4[1] - span_w
    if room_h < 0 or room_w < 0:
        raise KernelInputError(
            f"kernel {kernel_size} with dilation {dilation2} does not fit the padded input "
            f"{height}x{width} (padding {pad4})"
        )
    out_h, out_w = room_h // stride2[0] + 1, room_w // stride2[1] + 1
    if out_h * out_w * int(x_shape[0]) > MAX_ELEMENTS:
        raise KernelInputError(f"conv output {out_h}x{out_w} is too large")
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
