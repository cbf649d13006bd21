"""Bad input raises a clear XnorlabError (ValueError/TypeError subclass), never a crash."""

from __future__ import annotations

import pytest
import torch

from xnorlab import engine
from xnorlab.binary.binarize import NaNInputWarning
from xnorlab.common.errors import XnorlabError
from xnorlab.engine import reference
from xnorlab.engine.errors import KernelConfigError, KernelInputError, KernelTypeError

W = torch.randn(8, 4, 3, 3)


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (torch.ones(1, 4, 5, 5, dtype=torch.int32), KernelTypeError, "float tensor"),
        (torch.ones(1, 4, 5, 5, dtype=torch.bool), KernelTypeError, "float tensor"),
        ([[1.0]], KernelTypeError, "torch.Tensor"),
        (torch.ones(4, 5, 5), KernelInputError, "4 dims"),
        (torch.ones(1, 4, 5, 5, device="meta"), KernelInputError, "CPU"),
        (torch.ones(0, 4, 5, 5), KernelInputError, "empty"),
        (torch.ones(1, 4, 0, 5), KernelInputError, "empty"),
        (torch.ones(1, 5, 5, 5), KernelInputError, "channels"),
        (torch.ones(1, 4, 2, 2), KernelInputError, "does not fit"),
    ],
)
def test_bad_conv_input(x: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        engine.xnor_conv2d(x, W)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"stride": 0}, "stride"),
        ({"stride": 2**40}, "stride"),
        ({"padding": -1}, "padding"),
        ({"padding": 2**40}, "padding"),
        ({"dilation": (1, 2, 3)}, "dilation"),
        ({"padding": "full"}, "padding"),
        ({"padding": "same", "stride": 2}, "same"),
        ({"scaling": "beta"}, "InputScaling"),
        ({"pad_mode": "reflect"}, "PadMode"),
        ({"groups": 0}, "groups"),
        ({"bias": torch.ones(3)}, "bias"),
        ({"bias": torch.ones(8, dtype=torch.int64)}, "bias"),
    ],
)
def test_bad_conv_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(XnorlabError, match=match):
        engine.xnor_conv2d(torch.randn(1, 4, 6, 6), W, **kwargs)  # type: ignore[arg-type]


def _expanded(*shape: int) -> torch.Tensor:
    """A float tensor of ``shape`` with no memory behind it (stride 0 everywhere)."""
    return torch.zeros((1,) * len(shape)).expand(*shape)


def test_sizes_that_would_overflow_are_refused_before_any_allocation() -> None:
    with pytest.raises(KernelInputError, match="too large"):
        engine.xnor_conv2d(_expanded(1, 4, 2**31 + 1, 1), W)
    with pytest.raises(KernelInputError, match="too large"):
        engine.xnor_linear(_expanded(2**31 + 1, 10), torch.randn(6, 10))
    with pytest.raises(KernelInputError, match="too large"):
        engine.xnor_conv2d(torch.randn(1, 4, 6, 6), W, padding=2**31 - 1)


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize(
    ("x", "kwargs", "match"),
    [
        # 2**32 input elements pass; their 8 x 2**30 outputs do not
        (_expanded(1, 4, 2**15, 2**15), {}, "conv output .* too large"),
        (_expanded(1, 4, 1, 1), {"padding": 2**19 - 1}, "conv output .* too large"),
        # a small output of a huge padded input (its packed copy would be 2**42 words)
        (_expanded(1, 4, 1, 1), {"padding": 2**20, "stride": 2**20}, "padded input .* too large"),
        (_expanded(1, 4, 1, 1), {"padding": (0, 2**30)}, "padded input .* too large"),
    ],
)
def test_every_conv_size_is_bounded_before_any_allocation(
    isa: str, packed: bool, x: torch.Tensor, kwargs: dict[str, object], match: str
) -> None:
    weight = engine.pack_conv2d_weight(W) if packed else W
    with pytest.raises(KernelInputError, match=match):
        engine.xnor_conv2d(x, weight, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(KernelInputError, match=match):  # grouped convs run in the reference
        engine.xnor_conv2d(x, torch.randn(8, 2, 3, 3), groups=2, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("fn", [engine.xnor_linear, engine.bwn_linear])
@pytest.mark.parametrize(
    ("x", "match"),
    [
        (_expanded(2**30, 1), "output .* too large"),  # 2**30 rows x 8 outputs
        (_expanded(2**27, 1), "padded input .* too large"),  # each row padded to 64 features
        (_expanded(2**16, 2**16, 1), "rows are too many"),
    ],
)
def test_every_linear_size_is_bounded_before_any_allocation(
    isa: str, fn: object, x: torch.Tensor, match: str
) -> None:
    for weight in (torch.randn(8, 1), engine.pack_linear_weight(torch.randn(8, 1))):
        with pytest.raises(KernelInputError, match=match):
            fn(x, weight)  # type: ignore[operator]


def test_weights_with_too_many_inputs_per_output_are_refused() -> None:
    with pytest.raises(KernelInputError, match="too many inputs per output"):
        engine.pack_conv2d_weight(torch.zeros(1, 1, 1, 1).expand(1, 2**28, 3, 3))


def test_bad_weights() -> None:
    x = torch.randn(1, 4, 6, 6)
    with pytest.raises(KernelTypeError, match="float"):
        engine.xnor_conv2d(x, W.to(torch.int64))
    with pytest.raises(KernelInputError, match="4 dims"):
        engine.xnor_conv2d(x, torch.randn(8, 36))
    with pytest.raises(KernelInputError, match="empty"):
        engine.xnor_conv2d(x, torch.randn(0, 4, 3, 3))
    with pytest.raises(KernelTypeError, match="packed Linear"):
        engine.xnor_conv2d(x, engine.pack_linear_weight(torch.randn(8, 4)))
    with pytest.raises(KernelTypeError, match="packed conv"):
        engine.bwn_linear(torch.randn(2, 4), engine.pack_conv2d_weight(W))


def test_bad_linear_input() -> None:
    weight = torch.randn(6, 10)
    for fn in (engine.xnor_linear, engine.bwn_linear):
        with pytest.raises(KernelInputError, match="last dim"):
            fn(torch.randn(3, 11), weight)
        with pytest.raises(KernelInputError, match="empty"):
            fn(torch.randn(0, 10), weight)
        with pytest.raises(KernelTypeError, match="float"):
            fn(torch.ones(3, 10, dtype=torch.int16), weight)
        with pytest.raises(KernelInputError, match="dims"):
            fn(torch.tensor(1.0), weight)


def test_nan_input_is_plus_one_with_a_warning_like_the_core(isa: str) -> None:
    x = torch.randn(1, 4, 6, 6)
    x[0, 1, 2, 3] = float("nan")
    with pytest.warns(NaNInputWarning):
        out = engine.xnor_conv2d(x, W, padding=1, scaling="none")
    with pytest.warns(NaNInputWarning):
        ref = reference.xnor_conv2d(x, W, padding=1, scaling="none")
    torch.testing.assert_close(out, ref)
    with pytest.warns(NaNInputWarning):
        kmap = engine.xnor_conv2d(x, W, padding=1, scaling="kmap")
    assert bool(kmap.isnan().any()) and not bool(kmap[..., 5, 0].isnan().any())


def test_other_float_dtypes_are_computed_in_float32() -> None:
    x = torch.randn(2, 4, 6, 6)
    out = engine.xnor_conv2d(x.double(), W, padding=1)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out.float(), engine.xnor_conv2d(x, W, padding=1))


def test_engine_settings_are_validated() -> None:
    with pytest.raises(KernelConfigError, match="not available"):
        engine.set_isa("neon")
    for bad in (0, 1000, 1.5, True):
        with pytest.raises(KernelConfigError, match="threads"):
            engine.set_threads(bad)  # type: ignore[arg-type]
