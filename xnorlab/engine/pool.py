"""``max_pool2d``: the max pool of channels_last float input in the native engine."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from xnorlab.engine._backend import native_module
from xnorlab.engine._calls import native_error
from xnorlab.engine._checks import as_pair
from xnorlab.engine.fused import checked_bounds, numpy_view


def max_pool2d(x: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0,
               clamp: tuple[float, float] | None = None) -> Tensor:  # fmt: skip
    """Max pool, in the engine for a float32 CPU input in channels_last memory (the layout it
    returns): torch's ``F.max_pool2d`` values bit for bit (padded taps never win, NaN wins,
    ties keep the first tap), without the indices torch's channels_last kernel computes. Any
    other input runs ``F.max_pool2d`` itself, the reference. ``stride`` None: the kernel size.

    ``clamp = (lo, hi)``: the pooled values clamped as ``torch.clamp`` does, in the same pass.
    Max is monotonic, so this is the pool of the clamped input (a ReLU before the pool) up to
    the sign of a zero, without writing the clamped tensor.
    """
    kernel = as_pair(kernel_size, "kernel_size", 1)
    steps = kernel if stride is None else as_pair(stride, "stride", 1)
    pad = as_pair(padding, "padding", 0)
    bounds = checked_bounds(clamp, "clamp")
    native = native_module()
    engine_input = (
        native is not None and type(x) is Tensor and x.dim() == 4
        and x.dtype is torch.float32 and x.is_cpu and not x.requires_grad
        and x.is_contiguous(memory_format=torch.channels_last)
    )  # fmt: skip
    if not engine_input:
        out: Tensor = F.max_pool2d(x, kernel, steps, pad)
        return out if bounds is None else out.clamp(*bounds)
    assert native is not None
    try:
        return torch.from_numpy(native.max_pool2d(numpy_view(x), kernel, steps, pad, bounds))
    except (ValueError, TypeError) as exc:
        raise native_error(exc) from exc
