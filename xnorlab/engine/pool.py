"""``max_pool2d``: the max pool of channels_last float input in the native engine."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from xnorlab.engine._backend import native_module
from xnorlab.engine._calls import native_error
from xnorlab.engine._checks import as_pair
from xnorlab.engine.fused import numpy_view


def max_pool2d(x: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0) -> Tensor:
    """Max pool, in the engine for a float32 CPU input in channels_last memory (the layout it
    returns): torch's ``F.max_pool2d`` values bit for bit (padded taps never win, NaN wins,
    ties keep the first tap), without the indices torch's channels_last kernel computes. Any
    other input runs ``F.max_pool2d`` itself, the reference. ``stride`` None: the kernel size.
    """
    kernel = as_pair(kernel_size, "kernel_size", 1)
    steps = kernel if stride is None else as_pair(stride, "stride", 1)
    pad = as_pair(padding, "padding", 0)
    native = native_module()
    engine_input = (
        native is not None and type(x) is Tensor and x.dim() == 4
        and x.dtype is torch.float32 and x.is_cpu and not x.requires_grad
        and x.is_contiguous(memory_format=torch.channels_last)
    )  # fmt: skip
    if not engine_input:
        out: Tensor = F.max_pool2d(x, kernel, steps, pad)
        return out
    assert native is not None
    try:
        return torch.from_numpy(native.max_pool2d(numpy_view(x), kernel, steps, pad))
    except (ValueError, TypeError) as exc:
        raise native_error(exc) from exc
