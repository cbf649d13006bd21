"""The XNOR-Net math as pure functions (Rastegari et al. 2016, arXiv 1603.05279).

Every function takes tensors and returns tensors; layers (``xnorlab.binary.layers``) call them.
Conventions (the same in the engine, ``native/README.md``, and in README's "The math"):

* ``sign(x) = +1 if x >= 0 else -1``; never 0. NaN maps to +1 with a warning.
* Straight-through estimator: ``d sign(x)/dx := 1{|x| <= clip}``.
* BWN: ``W ~= alpha * sign(W)`` with ``alpha = mean |W|`` per output filter (eq. 3-4).
* XNOR: ``I (*) W ~= (sign(I) (*) sign(W)) .* K * alpha`` (section 3.2), with ``K`` the box
  filter of ``A = mean_c |I|`` applied with the layer's stride, padding and dilation.
* Padding of the binary input: ``zero`` (padded taps contribute 0, PyTorch semantics) or
  ``one`` (padded taps are +1). The K map always zero-pads ``|I|`` (a padded pixel has no
  magnitude).
* Gradients: sign(I) uses the STE; the input scale (K, beta) is differentiated by autograd as
  the plain function of ``|I|`` that it is (not treated as a constant).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from xnorlab.binary.modes import InputScaling, PadMode, WeightGrad

IntPair = tuple[int, int]
Pad4 = tuple[int, int, int, int]  # (left, right, top, bottom), the order of F.pad


class NaNInputWarning(RuntimeWarning):
    """Raised (as a warning) when sign() meets NaN; NaN is binarized to +1."""


def _pair(value: int | Sequence[int]) -> IntPair:
    if isinstance(value, int):
        return (value, value)
    first, second = tuple(value)
    return (int(first), int(second))


def sign_nonzero(x: Tensor) -> Tensor:
    """Binarize to {-1, +1}: ``sign(x) = +1 if x >= 0 else -1``; NaN -> +1 (warns).

    Unlike ``torch.sign`` this never returns 0, so the result is a true binary tensor.
    """
    if x.is_floating_point() and bool(torch.isnan(x).any()):
        warnings.warn(
            "sign(): input contains NaN; NaN is binarized to +1", NaNInputWarning, stacklevel=2
        )
    positive = (x >= 0) | torch.isnan(x) if x.is_floating_point() else x >= 0
    one = torch.ones((), dtype=x.dtype if x.is_floating_point() else torch.float32, device=x.device)
    return torch.where(positive, one, -one)


class _SteSign(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, clip: float) -> Tensor:
        ctx.save_for_backward(x)
        ctx.clip = clip
        return sign_nonzero(x)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors
        return grad_out * (x.abs() <= ctx.clip).to(grad_out.dtype), None


def ste_sign(x: Tensor, clip: float = 1.0) -> Tensor:
    """``sign(x)`` forward, straight-through gradient ``dC/dx = dC/dy * 1{|x| <= clip}``."""
    out: Tensor = _SteSign.apply(x, clip)
    return out


def weight_scale_alpha(weight: Tensor) -> Tensor:
    """Per-output-filter scale ``alpha_c = mean |W_c|`` (paper eq. 4), shape ``(C_out,)``.

    ``W_c`` is row ``c`` of a Linear weight or filter ``c`` of a Conv weight; this is the
    L1-optimal scale of ``W_c ~= alpha_c * sign(W_c)``.
    """
    if weight.dim() < 2:
        raise ValueError(
            f"weight must have at least 2 dims (C_out, ...), got {tuple(weight.shape)}"
        )
    return weight.abs().flatten(1).mean(dim=1)


def _broadcast_alpha(alpha: Tensor, ndim: int) -> Tensor:
    return alpha.reshape((-1,) + (1,) * (ndim - 1))


class _BinarizeWeight(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, weight: Tensor, rule: str, clip: float) -> Tensor:
        alpha = weight.abs().flatten(1).mean(dim=1)
        ctx.save_for_backward(weight, alpha)
        ctx.rule = rule
        ctx.clip = clip
        return _broadcast_alpha(alpha, weight.dim()) * sign_nonzero(weight)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, None, None]:
        weight, alpha = ctx.saved_tensors
        inside = (weight.abs() <= ctx.clip).to(grad_out.dtype)
        if ctx.rule == WeightGrad.PAPER.value:
            n_weights = weight[0].numel()
            scale = 1.0 / n_weights + _broadcast_alpha(alpha, weight.dim()) * inside
            return grad_out * scale, None, None
        return grad_out * inside, None, None


def binarize_weight(
    weight: Tensor, weight_grad: WeightGrad | str = WeightGrad.PAPER, clip: float = 1.0
) -> Tensor:
    """BWN weight ``W~ = alpha * sign(W)`` with ``alpha = mean |W|`` per output filter.

    Backward (``weight_grad``):

    * ``paper`` (eq. 5): ``dC/dW_i = dC/dW~_i * (1/n + alpha * 1{|W_i| <= clip})``,
      ``n = C_in/groups * kh * kw`` (or ``in_features``);
    * ``ste``: ``dC/dW_i = dC/dW~_i * 1{|W_i| <= clip}``.
    """
    rule = WeightGrad.parse(weight_grad).value
    out: Tensor = _BinarizeWeight.apply(weight, rule, clip)
    return out


def conv_pad4(
    padding: int | Sequence[int] | str,
    kernel_size: IntPair,
    dilation: IntPair,
) -> Pad4:
    """Explicit ``(left, right, top, bottom)`` padding of a conv, resolving ``'same'``/``'valid'``.

    ``'same'`` follows PyTorch: total ``d*(k-1)``, the extra pixel on the right/bottom.
    """
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            total_h = dilation[0] * (kernel_size[0] - 1)
            total_w = dilation[1] * (kernel_size[1] - 1)
            return (total_w // 2, total_w - total_w // 2, total_h // 2, total_h - total_h // 2)
        raise ValueError(f"unknown padding {padding!r}")
    pad_h, pad_w = _pair(padding)
    if pad_h < 0 or pad_w < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    return (pad_w, pad_w, pad_h, pad_h)


def input_scale_kmap(
    x: Tensor,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] | str = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> Tensor:
    """The paper's K map (section 3.2), shape ``(N, groups, H_out, W_out)``.

    ``A = mean_c |I|`` (over the channels of each group), ``K = A (*) k`` with ``k`` a
    ``kh x kw`` box filter of entries ``1/(kh*kw)``, applied with the layer's stride, zero
    padding and dilation, so ``K`` has the conv output's spatial shape.
    """
    if x.dim() != 4:
        raise ValueError(f"K map needs an NCHW input, got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    if c % groups != 0:
        raise ValueError(f"{c} input channels do not split into {groups} groups")
    kh, kw = _pair(kernel_size)
    dil = _pair(dilation)
    magnitude = x.abs().reshape(n, groups, c // groups, h, w).mean(dim=2)
    magnitude = F.pad(magnitude, conv_pad4(padding, (kh, kw), dil))
    box = torch.full((groups, 1, kh, kw), 1.0 / (kh * kw), dtype=x.dtype, device=x.device)
    return F.conv2d(magnitude, box, stride=_pair(stride), dilation=dil, groups=groups)


def input_scale_scalar(x: Tensor) -> Tensor:
    """One beta per sample, ``beta_n = mean |I_n|`` over all other dims; shape ``(N, 1, ..)``."""
    if x.dim() < 2:
        raise ValueError(f"input must be batched (N, ...), got shape {tuple(x.shape)}")
    beta = x.abs().flatten(1).mean(dim=1)
    return beta.reshape((-1,) + (1,) * (x.dim() - 1))


def pad_binary_input(binary: Tensor, pad4: Pad4, pad_mode: PadMode | str) -> Tensor:
    """Pad a {-1,+1} NCHW tensor: ``zero`` pads with 0 (no contribution), ``one`` with +1."""
    if pad4 == (0, 0, 0, 0):
        return binary
    value = 0.0 if PadMode.parse(pad_mode) is PadMode.ZERO else 1.0
    return F.pad(binary, pad4, value=value)


def xnor_conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] | str = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    scaling: InputScaling | str = InputScaling.KMAP,
    pad_mode: PadMode | str = PadMode.ZERO,
    weight_grad: WeightGrad | str = WeightGrad.PAPER,
    clip: float = 1.0,
) -> Tensor:
    """XNOR convolution (paper section 3.2), differentiable, in float arithmetic.

    ``out = (pad(sign(I)) (*) sign(W)) * alpha[c_out] * S + bias`` where ``alpha = mean |W|``
    per filter and ``S`` is the K map (``kmap``), ``mean |I_n|`` (``scalar``) or 1 (``none``).
    Zero padding of ``sign(I)`` contributes 0, one padding +1. Equivalently
    ``binarize_weight(W) (*) pad(sign(I))`` times ``S``; the BWN rule gives the weight gradient.
    """
    if x.dim() != 4:
        raise ValueError(f"xnor_conv2d expects an NCHW input, got shape {tuple(x.shape)}")
    kh, kw = int(weight.shape[2]), int(weight.shape[3])
    dil = _pair(dilation)
    binary_input = pad_binary_input(ste_sign(x, clip), conv_pad4(padding, (kh, kw), dil), pad_mode)
    scaled_weight = binarize_weight(weight, weight_grad, clip)
    out = F.conv2d(binary_input, scaled_weight, None, _pair(stride), 0, dil, groups)
    mode = InputScaling.parse(scaling)
    if mode is InputScaling.KMAP:
        kmap = input_scale_kmap(x, (kh, kw), stride, padding, dil, groups)
        out = out * kmap.repeat_interleave(out.shape[1] // groups, dim=1)
    elif mode is InputScaling.SCALAR:
        out = out * input_scale_scalar(x)
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1)
    return out


def xnor_linear(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    scaling: InputScaling | str = InputScaling.KMAP,
    weight_grad: WeightGrad | str = WeightGrad.PAPER,
    clip: float = 1.0,
) -> Tensor:
    """XNOR fully-connected layer: ``out = (sign(x) @ sign(W)^T) * alpha[o] * beta + bias``.

    ``beta`` is ``mean |x|`` over the features of each row for ``kmap`` and ``scalar`` (a
    Linear layer has no spatial map, so both mean one beta per row), 1 for ``none``.
    """
    if x.dim() < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"xnor_linear: input's last dim {tuple(x.shape)} does not match "
            f"in_features={weight.shape[1]}"
        )
    out = F.linear(ste_sign(x, clip), binarize_weight(weight, weight_grad, clip))
    if InputScaling.parse(scaling) is not InputScaling.NONE:
        out = out * x.abs().mean(dim=-1, keepdim=True)
    if bias is not None:
        out = out + bias
    return out
