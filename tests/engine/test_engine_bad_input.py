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


def test_sizes_that_would_overflow_are_refused_before_any_allocation() -> None:
    huge = torch.zeros(1, 4, 1, 1).expand(1, 4, 2**31 + 1, 1)  # no memory behind it
    with pytest.raises(KernelInputError, match="too large"):
        engine.xnor_conv2d(huge, W)
    with pytest.raises(KernelInputError, match="too large"):
        engine.xnor_linear(torch.zeros(1, 1).expand(2**31 + 1, 10), torch.randn(6, 10))
    with pytest.raises(KernelInputError, match="too large"):
        engine.xnor_conv2d(torch.randn(1, 4, 6, 6), W, padding=2**31 - 1)


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
