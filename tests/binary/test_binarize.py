"""Every formula of xnorlab.binary.binarize against small examples computed by hand or by
independent loops written out in the test."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from xnorlab.binary.binarize import (
    NaNInputWarning,
    binarize_weight,
    conv_pad4,
    input_scale_kmap,
    input_scale_scalar,
    sign_nonzero,
    ste_sign,
    weight_scale_alpha,
    xnor_conv2d,
    xnor_linear,
)


def test_sign_is_never_zero_and_zero_maps_to_plus_one() -> None:
    x = torch.tensor([-2.0, -0.0, 0.0, 1e-30, -1e-30, 3.0])
    assert sign_nonzero(x).tolist() == [-1.0, 1.0, 1.0, 1.0, -1.0, 1.0]


def test_sign_of_nan_is_plus_one_with_a_warning() -> None:
    x = torch.tensor([float("nan"), -1.0])
    with pytest.warns(NaNInputWarning, match="NaN"):
        out = sign_nonzero(x)
    assert out.tolist() == [1.0, -1.0]


def test_sign_keeps_dtype() -> None:
    assert sign_nonzero(torch.tensor([1.0, -1.0], dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize("clip", [1.0, 0.5])
def test_ste_gradient_is_one_inside_clip(clip: float) -> None:
    x = torch.tensor([-2.0, -0.5, -0.3, 0.0, 0.4, 0.5, 0.9, 1.5], requires_grad=True)
    ste_sign(x, clip).sum().backward()
    expected = [1.0 if abs(v) <= clip else 0.0 for v in x.detach().tolist()]
    assert x.grad is not None
    assert x.grad.tolist() == expected


def test_alpha_is_mean_abs_per_output_filter() -> None:
    w = torch.tensor([[1.0, -2.0], [3.0, -4.0], [0.0, 0.5]])
    assert weight_scale_alpha(w).tolist() == [1.5, 3.5, 0.25]
    conv_w = torch.arange(-8, 8, dtype=torch.float32).reshape(2, 2, 2, 2)
    # filter 0: |-8..-1| mean = 4.5 ; filter 1: |0..7| mean = 3.5
    assert weight_scale_alpha(conv_w).tolist() == [4.5, 3.5]


def test_bwn_weight_is_alpha_times_sign() -> None:
    w = torch.tensor([[1.0, -2.0], [3.0, 0.0]])
    assert binarize_weight(w).tolist() == [[1.5, -1.5], [1.5, 1.5]]


def test_bwn_paper_gradient_is_eq5() -> None:
    w = torch.tensor([[0.5, -2.0, 0.25, 1.0]], requires_grad=True)
    g = torch.tensor([[1.0, 2.0, -3.0, 4.0]])
    (binarize_weight(w, "paper") * g).sum().backward()
    alpha = (0.5 + 2.0 + 0.25 + 1.0) / 4
    n = 4
    inside = [1.0, 0.0, 1.0, 1.0]
    expected = [gi * (1 / n + alpha * ii) for gi, ii in zip(g[0].tolist(), inside, strict=True)]
    assert w.grad is not None
    assert w.grad[0].tolist() == pytest.approx(expected)


def test_bwn_ste_gradient() -> None:
    w = torch.tensor([[0.5, -2.0, 0.25, 1.0]], requires_grad=True)
    g = torch.tensor([[1.0, 2.0, -3.0, 4.0]])
    (binarize_weight(w, "ste") * g).sum().backward()
    assert w.grad is not None
    assert w.grad[0].tolist() == [1.0, 0.0, -3.0, 4.0]


def _kmap_by_loops(x: torch.Tensor, k: int, stride: int, pad: int, dilation: int) -> torch.Tensor:
    n, _, h, w = x.shape
    a = x.abs().mean(dim=1)  # N x H x W
    h_out = (h + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    w_out = (w + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    out = torch.zeros(n, 1, h_out, w_out, dtype=torch.float64)
    for b, i, j in itertools.product(range(n), range(h_out), range(w_out)):
        total = 0.0
        for di, dj in itertools.product(range(k), range(k)):
            r = i * stride - pad + di * dilation
            c = j * stride - pad + dj * dilation
            if 0 <= r < h and 0 <= c < w:
                total += float(a[b, r, c])
        out[b, 0, i, j] = total / (k * k)
    return out


def test_kmap_small_example_by_hand() -> None:
    # one channel 3x3, |I| = 1..9, 2x2 box, stride 1, no padding
    x = -torch.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    kmap = input_scale_kmap(x, 2)
    assert kmap.tolist() == [[[[3.0, 4.0], [6.0, 7.0]]]]
    # two channels: A is the channel mean of |I|
    x2 = torch.stack([torch.full((2, 2), 2.0), torch.full((2, 2), -4.0)]).unsqueeze(0)
    assert input_scale_kmap(x2, 1).tolist() == [[[[3.0, 3.0], [3.0, 3.0]]]]


@pytest.mark.parametrize(
    ("k", "stride", "pad", "dilation"), [(3, 1, 1, 1), (3, 2, 1, 1), (2, 2, 0, 1), (3, 1, 2, 2)]
)
def test_kmap_with_stride_padding_dilation_matches_loops(
    k: int, stride: int, pad: int, dilation: int
) -> None:
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    kmap = input_scale_kmap(x, k, stride, pad, dilation)
    assert torch.allclose(kmap, _kmap_by_loops(x, k, stride, pad, dilation))


def test_kmap_has_conv_output_shape() -> None:
    x = torch.randn(1, 4, 9, 9)
    conv_out = F.conv2d(x, torch.randn(5, 4, 3, 3), stride=2, padding=1)
    assert input_scale_kmap(x, 3, 2, 1).shape[-2:] == conv_out.shape[-2:]


def test_scalar_beta_is_mean_abs_per_sample() -> None:
    x = torch.tensor([[[[1.0, -3.0]]], [[[0.0, 2.0]]]])
    assert input_scale_scalar(x).flatten().tolist() == [2.0, 1.0]


def test_conv_pad4_resolves_same_and_valid() -> None:
    assert conv_pad4("valid", (3, 3), (1, 1)) == (0, 0, 0, 0)
    assert conv_pad4("same", (3, 3), (1, 1)) == (1, 1, 1, 1)
    assert conv_pad4("same", (4, 2), (1, 1)) == (0, 1, 1, 2)
    assert conv_pad4((1, 2), (3, 3), (1, 1)) == (2, 2, 1, 1)


def _xnor_conv_by_loops(
    x: torch.Tensor,
    w: torch.Tensor,
    stride: int,
    pad: int,
    pad_value: float,
    scaling: str,
) -> torch.Tensor:
    """Independent implementation: explicit loops over every tap."""
    n, c_in, h, wd = x.shape
    c_out, _, k, _ = w.shape
    sx = torch.where(x >= 0, 1.0, -1.0).double()
    sw = torch.where(w >= 0, 1.0, -1.0).double()
    alpha = w.abs().double().flatten(1).mean(1)
    h_out = (h + 2 * pad - k) // stride + 1
    w_out = (wd + 2 * pad - k) // stride + 1
    out = torch.zeros(n, c_out, h_out, w_out, dtype=torch.float64)
    kmap = _kmap_by_loops(x.double(), k, stride, pad, 1)
    beta = x.abs().double().flatten(1).mean(1)
    for b, o, i, j in itertools.product(range(n), range(c_out), range(h_out), range(w_out)):
        acc = 0.0
        for ci, di, dj in itertools.product(range(c_in), range(k), range(k)):
            r, c = i * stride - pad + di, j * stride - pad + dj
            value = float(sx[b, ci, r, c]) if (0 <= r < h and 0 <= c < wd) else pad_value
            acc += value * float(sw[o, ci, di, dj])
        scale = {"kmap": float(kmap[b, 0, i, j]), "scalar": float(beta[b]), "none": 1.0}[scaling]
        out[b, o, i, j] = acc * float(alpha[o]) * scale
    return out


@pytest.mark.parametrize("scaling", ["kmap", "scalar", "none"])
@pytest.mark.parametrize(("pad_mode", "pad_value"), [("zero", 0.0), ("one", 1.0)])
@pytest.mark.parametrize(("stride", "pad"), [(1, 1), (2, 1), (1, 0), (2, 2)])
def test_xnor_conv_matches_the_formula_by_loops(
    scaling: str, pad_mode: str, pad_value: float, stride: int, pad: int
) -> None:
    x = torch.randn(2, 3, 5, 6)
    x[0, 0, 0, 0] = 0.0  # exact zero must count as +1
    w = torch.randn(4, 3, 3, 3)
    out = xnor_conv2d(x, w, None, stride, pad, 1, 1, scaling, pad_mode)
    expected = _xnor_conv_by_loops(x, w, stride, pad, pad_value, scaling)
    assert torch.allclose(out.double(), expected, atol=1e-5)


def test_xnor_conv_none_scaling_equals_integer_conv_of_signs() -> None:
    x = torch.randn(1, 5, 8, 8)
    w = torch.randn(3, 5, 3, 3)
    out = xnor_conv2d(x, w, None, 1, 1, 1, 1, "none", "zero")
    alpha = w.abs().flatten(1).mean(1).reshape(-1, 1, 1)
    ints = F.conv2d(sign_nonzero(x), sign_nonzero(w), padding=1)
    assert torch.equal(torch.round(out / alpha), ints)


def test_xnor_conv_adds_bias_after_scaling() -> None:
    x, w, b = torch.randn(1, 2, 4, 4), torch.randn(3, 2, 3, 3), torch.tensor([1.0, -2.0, 0.5])
    with_bias = xnor_conv2d(x, w, b, padding=1)
    without = xnor_conv2d(x, w, None, padding=1)
    assert torch.allclose(with_bias - without, b.reshape(1, 3, 1, 1).expand_as(with_bias))


def test_grouped_xnor_conv_uses_a_kmap_per_group() -> None:
    x = torch.randn(1, 4, 5, 5)
    w = torch.randn(6, 2, 3, 3)
    out = xnor_conv2d(x, w, None, 1, 1, 1, 2, "kmap", "zero")
    # group g sees channels 2g..2g+1 and produces outputs 3g..3g+2
    for g in range(2):
        part = xnor_conv2d(x[:, 2 * g : 2 * g + 2], w[3 * g : 3 * g + 3], None, 1, 1)
        assert torch.allclose(out[:, 3 * g : 3 * g + 3], part, atol=1e-6)


@pytest.mark.parametrize("scaling", ["kmap", "scalar", "none"])
def test_xnor_linear_matches_hand_formula(scaling: str) -> None:
    x = torch.tensor([[1.0, -2.0, 0.0], [-0.5, 0.5, -3.0]])
    w = torch.tensor([[1.0, 1.0, -1.0], [-2.0, 4.0, 0.0]])
    b = torch.tensor([0.5, -0.5])
    # signs: x -> [[1,-1,1],[-1,1,-1]], w -> [[1,1,-1],[-1,1,1]]
    dots = torch.tensor([[-1.0, -1.0], [1.0, 1.0]])
    alpha = torch.tensor([1.0, 2.0])
    beta = torch.tensor([[1.0], [4.0 / 3.0]]) if scaling != "none" else torch.ones(2, 1)
    expected = dots * alpha * beta + b
    assert torch.allclose(xnor_linear(x, w, b, scaling), expected)


def test_xnor_linear_rejects_wrong_width() -> None:
    with pytest.raises(ValueError, match="in_features=3"):
        xnor_linear(torch.randn(2, 4), torch.randn(5, 3))


def test_xnor_input_gradient_is_ste_and_kmap_is_differentiated() -> None:
    x = torch.tensor([[[[0.5, -2.0], [0.2, -0.1]]]], requires_grad=True)
    w = torch.ones(1, 1, 1, 1)
    xnor_conv2d(x, w, scaling="none").sum().backward()
    assert x.grad is not None
    assert x.grad.flatten().tolist() == [1.0, 0.0, 1.0, 1.0]  # alpha=1, STE mask
    x.grad = None
    # kmap with a 1x1 kernel: out = sign(x) * |x| = x, so d out / dx = STE + d|x|/dx * sign(x)
    xnor_conv2d(x, w, scaling="kmap").sum().backward()
    a = x.detach().abs()
    expected = torch.where(a <= 1, a, 0.0) + 1.0  # STE*|x| + sign(x)*sign(x)
    assert torch.allclose(x.grad, expected)
