"""Pure-PyTorch reference of the engine, built on ``xnorlab.binary.binarize``.

Used when the native module is missing or ``XNORLAB_KERNEL=reference``, for grouped convs, and
as the parity oracle of the tests. Same signatures as the facade; ``weight`` is a float tensor
or a packed weight (whose signs and alpha are used as stored). Runs without autograd.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from xnorlab.binary import binarize
from xnorlab.engine.packed import (
    PackedConv2dWeight,
    PackedLinearWeight,
    pack_bits,
    pack_conv2d_weight,
    pack_linear_weight,
)

__all__ = [
    "bwn_linear",
    "pack_bits",
    "pack_conv2d_weight",
    "pack_linear_weight",
    "xnor_conv2d",
    "xnor_linear",
]

IntArg = int | Sequence[int]


def _conv_weight(weight: Tensor | PackedConv2dWeight) -> tuple[Tensor, Tensor | None]:
    """Float weight whose ``alpha * sign`` equals the packed one, and the packed bias."""
    if isinstance(weight, PackedConv2dWeight):
        kh, kw = weight.kernel_size
        signs = weight.signs().reshape(weight.out_channels, weight.in_channels, kh, kw)
        return signs * weight.alpha.reshape(-1, 1, 1, 1), weight.bias
    return weight.detach(), None


def _linear_weight(weight: Tensor | PackedLinearWeight) -> tuple[Tensor, Tensor | None]:
    if isinstance(weight, PackedLinearWeight):
        signs = weight.signs().reshape(weight.out_channels, weight.in_channels)
        return signs * weight.alpha.reshape(-1, 1), weight.bias
    return weight.detach(), None


def xnor_conv2d(
    x: Tensor,
    weight: Tensor | PackedConv2dWeight,
    bias: Tensor | None = None,
    stride: IntArg = 1,
    padding: IntArg | str = 0,
    dilation: IntArg = 1,
    pad_mode: str = "zero",
    scaling: str = "kmap",
    groups: int = 1,
) -> Tensor:
    """``(pad(sign(x)) (*) sign(W)) * alpha * S + bias`` (``xnorlab.binary.binarize.xnor_conv2d``)."""
    float_weight, packed_bias = _conv_weight(weight)
    with torch.no_grad():
        return binarize.xnor_conv2d(
            x, float_weight, bias if bias is not None else packed_bias, stride, padding,
            dilation, groups, scaling=scaling, pad_mode=pad_mode,
        )  # fmt: skip


def xnor_linear(
    x: Tensor,
    weight: Tensor | PackedLinearWeight,
    bias: Tensor | None = None,
    scaling: str = "kmap",
) -> Tensor:
    """``(sign(x) @ sign(W)^T) * alpha * beta + bias`` (``xnorlab.binary.binarize.xnor_linear``)."""
    float_weight, packed_bias = _linear_weight(weight)
    with torch.no_grad():
        return binarize.xnor_linear(
            x, float_weight, bias if bias is not None else packed_bias, scaling=scaling
        )


def bwn_linear(
    x: Tensor,
    weight: Tensor | PackedLinearWeight,
    bias: Tensor | None = None,
) -> Tensor:
    """BWN Linear: ``x @ (alpha * sign(W))^T + bias`` with float ``x``."""
    float_weight, packed_bias = _linear_weight(weight)
    with torch.no_grad():
        scaled = binarize.binarize_weight(float_weight)
        return F.linear(x, scaled, bias if bias is not None else packed_bias)
