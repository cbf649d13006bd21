"""The bit-packed XNOR engine: native C++ kernels (AVX-512 / AVX2 / scalar) with a pure-PyTorch
reference (``xnorlab.engine.reference``) of identical semantics.

Functions take a float input and return a float output; ``weight`` is a float tensor (packed on
the fly) or a packed object from :func:`pack_conv2d_weight` / :func:`pack_linear_weight` (packed
once, the fast path). Semantics are those of ``xnorlab.binary.binarize``:

* ``sign(x) = +1`` for ``x >= 0`` (also for ``-0.0``), ``-1`` otherwise; NaN -> +1 with a
  ``NaNInputWarning`` (like the core); the K map / beta of a NaN input is NaN, as in the core.
* ``xnor_conv2d``: ``(pad(sign(x)) (*) sign(W)) * alpha * S + bias``, ``alpha = mean |W|`` per
  filter, ``S`` = K map (``kmap``), ``mean |x_n|`` (``scalar``) or 1 (``none``); ``zero``
  padding adds 0, ``one`` padding +1. With ``scaling="none"`` and ``alpha = 1`` the result equals
  ``F.conv2d(sign(x), sign(W), ...)`` exactly.
* ``groups > 1`` runs in the reference (the engine packs channels of one group per word row;
  grouped layers are small and rare in the nets we target).
* Conv outputs are returned in ``channels_last`` memory format (the engine writes NHWC, which
  the next layer's packing reads directly); values and shape are the usual NCHW ones.
* Inputs of any float dtype are computed in float32 and returned in the input's dtype.
* Inference only: outputs carry no autograd graph (train with ``xnorlab.binary.binarize``).

Around the conv: a :class:`Prologue` (``clamp(x * scale + shift)`` per input channel, applied
while packing) and an :class:`Epilogue` (``clamp(out + residual)``, applied per output tile);
:class:`PreparedConv2d` validates a conv once per input shape and can hand the next conv its
packed input (:class:`PackedActivation`); :func:`max_pool2d` pools channels_last input.

Engine controls: :func:`info`, :func:`set_isa`, :func:`set_threads`, :func:`get_threads`,
``XNORLAB_KERNEL=reference``, ``XNORLAB_ISA``, ``XNORLAB_THREADS``; timing with :func:`profile`;
the micro-kernel's own rate (the bare popcount loop) with :func:`microkernel_rate`.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from xnorlab.binary.binarize import NaNInputWarning
from xnorlab.binary.modes import InputScaling, PadMode
from xnorlab.common.errors import XnorlabError
from xnorlab.engine import reference
from xnorlab.engine._backend import (
    get_threads,
    info,
    microkernel_rate,
    native_module,
    set_isa,
    set_threads,
)
from xnorlab.engine._checks import (
    MAX_DIM,
    ConvGeometry,
    as_float32,
    as_pair,
    check_groups,
    check_input,
    check_linear_sizes,
    conv_geometry,
    parse_pad_mode,
    parse_scaling,
)
from xnorlab.engine.errors import KernelConfigError, KernelInputError, KernelTypeError
from xnorlab.engine.fused import NO_EPILOGUE, Epilogue, Prologue, numpy_view
from xnorlab.engine.packed import (
    PackedConv2dWeight,
    PackedLinearWeight,
    _check_bias,
    pack_conv2d_weight,
    pack_linear_weight,
)
from xnorlab.engine.profiling import KernelTiming, is_profiling, profile, record

__all__ = [
    "Epilogue",
    "KernelConfigError",
    "KernelInputError",
    "KernelTiming",
    "KernelTypeError",
    "PackedActivation",
    "PackedConv2dWeight",
    "PackedLinearWeight",
    "PreparedConv2d",
    "Prologue",
    "bwn_linear",
    "get_threads",
    "info",
    "max_pool2d",
    "microkernel_rate",
    "pack_conv2d_weight",
    "pack_linear_weight",
    "profile",
    "reference",
    "set_isa",
    "set_threads",
    "xnor_conv2d",
    "xnor_linear",
]

_NAN_MESSAGE = "sign(): input contains NaN; NaN is binarized to +1"
_CALLS_CACHED_PER_WEIGHT = 8


def _native_error(exc: Exception) -> XnorlabError:
    """The facade's error for a check the native boundary refused (TypeError: type or dtype)."""
    return KernelTypeError(str(exc)) if isinstance(exc, TypeError) else KernelInputError(str(exc))


def _bias_array(packed: PackedConv2dWeight | PackedLinearWeight, bias: Any) -> Any:
    """None for the packed bias, else ``bias`` padded to whole 32-channel blocks (numpy)."""
    if bias is None:
        return None
    checked = _check_bias(bias, packed.out_channels)
    assert checked is not None
    out = torch.zeros_like(packed.bias_padded)
    out[: packed.out_channels] = checked
    return out.numpy()


def _record(op: str, shapes: tuple[Any, Any, Any], macs: int, split: Any, start: float) -> None:
    total = time.perf_counter() - start
    pack_s, popcount_s, scale_s, _ = split
    native = native_module()
    record(
        KernelTiming(
            op, tuple(shapes[0]), tuple(shapes[1]), tuple(shapes[2]), macs,
            str(native.active_isa()) if native is not None else "reference", get_threads(),
            pack_s, popcount_s, scale_s, max(0.0, total - pack_s - popcount_s - scale_s), total,
        )
    )  # fmt: skip


def _conv_params(native: Any, x: Tensor, channels_last: bool, packed: PackedConv2dWeight,
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
        raise _native_error(exc) from exc


# A conv call ready to run: the native function, its ConvParams and the weight's PackedBuffers.
_ConvCall = tuple[Any, Any, Any]


def _run_conv(call: _ConvCall, x: Tensor, packed: PackedConv2dWeight, bias: Any,
              start: float, epilogue: Epilogue = NO_EPILOGUE,
              prologue: Prologue | None = None) -> Tensor:  # fmt: skip
    """Run ``call`` on the float32 input ``x``; returns the channels_last float32 output."""
    conv, params, buffers = call
    bias_array = _bias_array(packed, bias)
    residual = epilogue.residual_array(params.out_shape)
    clamp = epilogue.bounds()
    scale = shift = bounds = None
    if prologue is not None:
        prologue.check(packed.in_channels)
        (scale, shift), bounds = prologue.arrays, prologue.clamp
    try:
        out, has_nan, split = conv(params, buffers, numpy_view(x), bias_array, residual, clamp,
                                   scale, shift, bounds)  # fmt: skip
    except (ValueError, TypeError) as exc:
        raise _native_error(exc) from exc
    if has_nan:
        warnings.warn(_NAN_MESSAGE, NaNInputWarning, stacklevel=3)
    result = torch.from_numpy(out)
    if is_profiling():
        _record_conv(x, packed, result, split, start)
    return result


def _plain(value: Any) -> bool:
    """An int, a str or a tuple of ints (bools excluded: ``True == 1`` in a cache key)."""
    kind = type(value)
    return kind is int or kind is str or (kind is tuple and all(type(v) is int for v in value))


def _call_key(x: Any, stride: Any, padding: Any, dilation: Any, pad_mode: Any,
              scaling: Any, prefer_nhwc: bool = False) -> tuple[Any, ...] | None:  # fmt: skip
    """Key under which a float32 CPU call's validated parameters are reused, or None."""
    if type(x) is not Tensor or x.dtype is not torch.float32 or not x.is_cpu:
        return None
    nhwc = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
    if nhwc and (prefer_nhwc or not x.is_contiguous()):
        channels_last = True
    elif x.is_contiguous():
        channels_last = False
    else:
        return None
    settings = (stride, padding, dilation, pad_mode, scaling)
    if not all(_plain(v) or isinstance(v, (PadMode, InputScaling)) for v in settings):
        return None
    return (tuple(x.shape), channels_last, *settings)


def _as_packed_conv(weight: Any) -> PackedConv2dWeight:
    if isinstance(weight, PackedConv2dWeight):
        return weight
    if isinstance(weight, PackedLinearWeight):
        raise KernelTypeError("xnor_conv2d got a packed Linear weight; use pack_conv2d_weight")
    return pack_conv2d_weight(weight)


def xnor_conv2d(
    x: Tensor,
    weight: Tensor | PackedConv2dWeight,
    bias: Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    pad_mode: PadMode | str = "zero",
    scaling: InputScaling | str = "kmap",
    groups: int = 1,
    epilogue: Epilogue = NO_EPILOGUE,
    prologue: Prologue | None = None,
) -> Tensor:
    """XNOR conv2d, ``(pad(sign(x)) (*) sign(W)) * alpha[c] * S + bias`` (see module doc),
    then ``clamp(out + residual, lo, hi)`` for an :class:`Epilogue` (fused in the engine, per
    tile while it is in cache; the reference adds and clamps afterwards). With a
    :class:`Prologue` the conv takes ``clamp(x * scale + shift, lo, hi)`` for ``x`` (fused into
    the engine's packing pass, which then reads channels_last input: other layouts are copied).

    Calls repeating an earlier call's input shape, layout and settings on the same packed
    weight reuse its validated native parameters (the per-call work is then the native call,
    which checks the input against them and allocates the output).
    """
    start = time.perf_counter()
    key = None
    if prologue is not None:
        x = _channels_last_input(x)
    if type(weight) is PackedConv2dWeight and type(groups) is int and groups == 1:
        key = _call_key(x, stride, padding, dilation, pad_mode, scaling, prologue is not None)
        cached = weight.call_cache.get(key) if key is not None else None
        if cached is not None:
            return _run_conv(cached, x, weight, bias, start, epilogue, prologue)
    x = check_input(x, 4, 4, "xnor_conv2d")
    mode, pad = parse_scaling(scaling), parse_pad_mode(pad_mode)
    native = native_module()
    if check_groups(groups) != 1 or native is None:
        _check_reference_conv(x, weight, stride, padding, dilation)
        if prologue is not None:
            x = prologue.reference(x).to(x.dtype)
        out = reference.xnor_conv2d(x, weight, bias, stride, padding, dilation, pad.value,
                                    mode.value, groups)  # fmt: skip
        return epilogue.reference(out)
    packed = _as_packed_conv(weight)
    if int(x.shape[1]) != packed.in_channels:
        raise KernelInputError(
            f"xnor_conv2d: input has {x.shape[1]} channels, weight expects {packed.in_channels}"
        )
    geo = conv_geometry(x.shape, packed.kernel_size, packed.out_channels, stride, padding,
                        dilation)  # fmt: skip
    x32, channels_last = as_float32(x, prefer_nhwc=prologue is not None)
    params = _conv_params(native, x32, channels_last, packed, geo, pad, mode)
    call = (native.xnor_conv2d, params, _buffers(native, packed))
    if key is not None:
        _remember(packed, key, call)
    result = _run_conv(call, x32, packed, bias, start, epilogue, prologue)
    return result if x.dtype == torch.float32 else result.to(x.dtype)


@dataclass(frozen=True)
class PackedActivation:
    """A conv's output in the packed form the next conv reads: its sign bits, laid out with
    that conv's halo, and per pixel the sums of ``|x|`` over each block of 32 channels (for
    its K map). A :class:`PreparedConv2d` linked with :meth:`PreparedConv2d.bits_for` returns
    it instead of a float tensor; only ``reader`` (the conv it was packed for) can read it.
    ``shape`` is the float output's shape."""

    bits: Any
    block_absum: Any
    shape: torch.Size
    reader: PreparedConv2d


def _input_shape(shape: Any, channels: int) -> torch.Size:
    """``shape`` as the torch.Size of a conv input ``(N, C, H, W)`` of ``channels`` channels."""
    items = list(shape) if isinstance(shape, (tuple, list)) else None
    if (
        items is None or len(items) != 4
        or any(type(v) is not int or not 1 <= v <= MAX_DIM for v in items)
    ):  # fmt: skip
        raise KernelInputError(
            f"input_shape must be 4 ints (N, C, H, W) in 1..{MAX_DIM}, got {shape!r}"
        )
    if items[1] != channels:
        raise KernelInputError(
            f"input_shape has {items[1]} channels, the weight expects {channels}"
        )
    return torch.Size(items)


class PreparedConv2d:
    """An XNOR conv validated once for one input shape (float32, channels_last memory): calling
    it with such an input (and a float32 channels_last residual of the output's shape) runs
    the engine with only the checks the native boundary makes, which costs a few microseconds
    less per call than :func:`xnor_conv2d` - it adds up over a network's calls at batch 1.
    Inputs it was not prepared for go through :func:`xnor_conv2d` (same result).

    Linked to the conv that alone reads its output (:meth:`bits_for`), it returns that conv's
    packed input (:class:`PackedActivation`: sign bits and sums of ``|x|``, written by the
    engine while each output tile is in cache) instead of a float tensor, and the next conv
    skips its packing pass. The signs are those of the float output; its K map adds the same
    ``|x|`` in another order (equal up to float rounding).
    """

    def __init__(
        self, input_shape: tuple[int, ...], weight: PackedConv2dWeight, stride: Any = 1,
        padding: Any = 0, dilation: Any = 1, pad_mode: PadMode | str = "zero",
        scaling: InputScaling | str = "kmap", clamp: tuple[float, float] | None = None,
        prologue: Prologue | None = None,
    ) -> None:  # fmt: skip
        if not isinstance(weight, PackedConv2dWeight):
            raise KernelTypeError("PreparedConv2d needs a packed conv weight (pack_conv2d_weight)")
        self.weight, self.prologue = weight, prologue
        self.settings: dict[str, Any] = {
            "stride": stride, "padding": padding, "dilation": dilation, "pad_mode": pad_mode,
            "scaling": scaling,
        }  # fmt: skip
        self.clamp = Epilogue(None, clamp).bounds()
        self.input_shape = _input_shape(input_shape, weight.in_channels)
        geo = conv_geometry(self.input_shape, weight.kernel_size, weight.out_channels, stride,
                            padding, dilation)  # fmt: skip
        self.out_shape = torch.Size((self.input_shape[0], weight.out_channels, geo.out_h,
                                     geo.out_w))  # fmt: skip
        self.next: PreparedConv2d | None = None
        native = native_module()
        self._call: _ConvCall | None = None
        self._prologue_args: tuple[Any, Any, Any] = (None, None, None)
        if native is not None and len(self.input_shape) == 4:
            if prologue is not None:
                prologue.check(weight.in_channels)
                self._prologue_args = (*prologue.arrays, prologue.clamp)
            probe = torch.empty(self.input_shape, device="meta")  # only its shape is read
            params = _conv_params(native, probe, True, weight, geo, parse_pad_mode(pad_mode),
                                  parse_scaling(scaling))  # fmt: skip
            self._call = (native.xnor_conv2d, params, _buffers(native, weight))
            self._packed_call = native.xnor_conv2d_packed

    @property
    def native(self) -> bool:
        """Whether the call runs in the native engine (else :func:`xnor_conv2d`'s reference)."""
        return self._call is not None

    def bits_for(self, reader: PreparedConv2d | None) -> None:
        """Return ``reader``'s packed input from now on (None: float output again). The
        reader takes this conv's output as its input and applies no prologue."""
        if reader is not None:
            if self._call is None or reader._call is None:
                raise KernelConfigError("bit outputs need the native engine")
            if reader.input_shape != self.out_shape or reader.prologue is not None:
                raise KernelInputError(
                    "bits_for: the reader must take this conv's output as it is (shape "
                    f"{tuple(self.out_shape)}, no prologue)"
                )
        self.next = reader

    def _takes(self, x: Tensor, residual: Tensor | None) -> bool:
        """Whether the engine can take ``x`` and ``residual`` as they are."""
        channels_last = torch.channels_last
        return (
            self._call is not None and type(x) is Tensor and x.shape == self.input_shape
            and x.dtype is torch.float32 and x.is_cpu
            and x.is_contiguous(memory_format=channels_last)
            and (residual is None or (
                type(residual) is Tensor and residual.shape == self.out_shape
                and residual.dtype is torch.float32 and residual.is_cpu
                and residual.is_contiguous(memory_format=channels_last)
            ))
        )  # fmt: skip

    def __call__(
        self, x: Tensor | PackedActivation, residual: Tensor | None = None
    ) -> Tensor | PackedActivation:
        """``clamp(conv(prologue(x)) + residual, clamp)``, as :func:`xnor_conv2d` computes it
        (as the next conv's :class:`PackedActivation` when linked by :meth:`bits_for`)."""
        if isinstance(x, PackedActivation):
            read: Tensor | PackedActivation = self._from_packed(x, residual)
            return read
        if not self._takes(x, residual):
            return xnor_conv2d(
                x, self.weight, **self.settings, epilogue=Epilogue(residual, self.clamp),
                prologue=self.prologue,
            )  # fmt: skip
        start = time.perf_counter()
        assert self._call is not None
        conv, params, buffers = self._call
        extra = None if residual is None else numpy_view(residual)
        try:
            out, has_nan, split = conv(params, buffers, numpy_view(x), None, extra, self.clamp,
                                       *self._prologue_args, self._next_params())  # fmt: skip
        except (ValueError, TypeError) as exc:
            raise _native_error(exc) from exc
        result: Tensor | PackedActivation = self._finish(out, has_nan, split, start)
        return result

    def _from_packed(self, x: PackedActivation, residual: Tensor | None) -> Any:
        """The conv of the packed input the conv before wrote for this one."""
        if x.reader is not self:
            raise KernelInputError("a packed activation can only be read by the conv it is for")
        start = time.perf_counter()
        assert self._call is not None
        _, params, buffers = self._call
        extra = None
        if residual is not None:
            extra = Epilogue(residual).residual_array(tuple(self.out_shape))
        try:
            out, has_nan, split = self._packed_call(
                params, buffers, x.bits, x.block_absum, None, extra, self.clamp,
                self._next_params(),
            )  # fmt: skip
        except (ValueError, TypeError) as exc:
            raise _native_error(exc) from exc
        return self._finish(out, has_nan, split, start)

    def _next_params(self) -> Any:
        return None if self.next is None or self.next._call is None else self.next._call[1]

    def _finish(self, out: Any, has_nan: bool, split: Any, start: float) -> Any:
        """The call's result (a tensor, or the next conv's packed input), its NaN warning and
        its profile record."""
        if has_nan:
            warnings.warn(_NAN_MESSAGE, NaNInputWarning, stacklevel=3)
        if self.next is not None:
            result: Any = PackedActivation(out[0], out[1], self.out_shape, self.next)
        else:
            result = torch.from_numpy(out)
        if is_profiling():
            weight = self.weight
            macs = self.out_shape.numel() * weight.in_channels * weight.taps
            shapes = (self.input_shape, (weight.out_channels, weight.in_channels,
                                         *weight.kernel_size), self.out_shape)  # fmt: skip
            _record("xnor_conv2d", shapes, macs, split, start)
        return result


def _channels_last_input(x: Any) -> Any:
    """A 4-D tensor input in channels_last memory (the prologue's layout); anything else as
    given, for the usual checks to refuse or handle."""
    if (
        isinstance(x, Tensor)
        and x.dim() == 4
        and not x.is_contiguous(memory_format=torch.channels_last)
    ):
        return x.contiguous(memory_format=torch.channels_last)
    return x


def _remember(packed: PackedConv2dWeight | PackedLinearWeight, key: Any, call: Any) -> None:
    """Keep ``call`` for ``key`` in the weight's small cache (emptied when full)."""
    if len(packed.call_cache) >= _CALLS_CACHED_PER_WEIGHT:
        packed.call_cache.clear()
    packed.call_cache[key] = call


def _buffers(native: Any, packed: PackedConv2dWeight | PackedLinearWeight) -> Any:
    try:
        return packed.native_buffers(native)
    except (ValueError, TypeError) as exc:
        raise _native_error(exc) from exc


def _check_reference_conv(x: Tensor, weight: Any, stride: Any, padding: Any,
                          dilation: Any) -> None:  # fmt: skip
    """The size bounds of the engine, for a conv the reference runs (grouped or no engine)."""
    if isinstance(weight, PackedConv2dWeight):
        conv_geometry(x.shape, weight.kernel_size, weight.out_channels, stride, padding, dilation)
    elif isinstance(weight, Tensor) and weight.dim() == 4:
        kernel = (int(weight.shape[2]), int(weight.shape[3]))
        conv_geometry(x.shape, kernel, int(weight.shape[0]), stride, padding, dilation)


def _record_conv(
    x: Tensor, packed: PackedConv2dWeight, result: Tensor, split: Any, start: float
) -> None:
    macs = result.numel() * packed.in_channels * packed.taps
    shapes = (x.shape, (packed.out_channels, packed.in_channels, *packed.kernel_size),
              result.shape)  # fmt: skip
    _record("xnor_conv2d", shapes, macs, split, start)


def _as_packed_linear(weight: Any) -> PackedLinearWeight:
    if isinstance(weight, PackedLinearWeight):
        return weight
    if isinstance(weight, PackedConv2dWeight):
        raise KernelTypeError("got a packed conv weight; use pack_linear_weight for Linear layers")
    return pack_linear_weight(weight)


def _out_features(weight: Any) -> int | None:
    if isinstance(weight, PackedLinearWeight):
        return weight.out_features
    if isinstance(weight, Tensor) and weight.dim() == 2:
        return int(weight.shape[0])
    return None  # the packing reports what is wrong with it


# A Linear call ready to run: the op's name, the native function, the weight's PackedBuffers
# and the scaling's name (None for BWN, which has no input scale).
_LinearCall = tuple[str, Any, Any, str | None]


def _linear_key(op: str, x: Any, scaling: Any) -> tuple[Any, ...] | None:
    """Key under which a float32 CPU Linear call's validated setup is reused, or None."""
    if type(x) is not Tensor or x.dtype is not torch.float32 or not x.is_cpu:
        return None
    if not x.is_contiguous():
        return None
    if not (scaling is None or _plain(scaling) or isinstance(scaling, InputScaling)):
        return None
    return (op, tuple(x.shape), scaling)


def _run_linear(call: _LinearCall, x: Tensor, packed: PackedLinearWeight, bias: Any,
                start: float) -> Tensor:  # fmt: skip
    """Run ``call`` on the float32 input ``x`` (..., F); returns the float32 output (..., O)."""
    op, fn, buffers, scaling = call
    bias_array = _bias_array(packed, bias)
    args = (buffers, numpy_view(x)) if scaling is None else (buffers, numpy_view(x), scaling)
    try:
        result = fn(*args, bias_array)
    except (ValueError, TypeError) as exc:
        raise _native_error(exc) from exc
    if len(result) == 3 and result[1]:  # xnor_linear's input_has_nan
        warnings.warn(_NAN_MESSAGE, NaNInputWarning, stacklevel=4)
    out = torch.from_numpy(result[0])
    if is_profiling():
        shapes = (x.shape, (packed.out_features, packed.in_features), out.shape)
        _record(op, shapes, out.numel() * packed.in_features, result[-1], start)
    return out


def _linear(op: str, x: Any, weight: Any, bias: Any, scaling: Any) -> Tensor:
    """The body of :func:`xnor_linear` and of :func:`bwn_linear` (``scaling`` None)."""
    start = time.perf_counter()
    key = _linear_key(op, x, scaling) if type(weight) is PackedLinearWeight else None
    cached = weight.call_cache.get(key) if key is not None else None
    if cached is not None:
        return _run_linear(cached, x, weight, bias, start)
    x = check_input(x, 1, 8, op)
    mode = None if scaling is None else parse_scaling(scaling)
    out_features = _out_features(weight)
    if out_features is not None:
        check_linear_sizes(x, out_features, op)
    native = native_module()
    if native is None:
        if mode is None:
            return reference.bwn_linear(x, weight, bias)
        return reference.xnor_linear(x, weight, bias, mode.value)
    packed = _as_packed_linear(weight)
    if int(x.shape[-1]) != packed.in_features:
        raise KernelInputError(
            f"{op}: input's last dim is {x.shape[-1]}, weight expects {packed.in_features}"
        )
    x32, _ = as_float32(x)
    fn = native.bwn_linear if mode is None else native.xnor_linear
    call = (op, fn, _buffers(native, packed), None if mode is None else mode.value)
    if key is not None:
        _remember(packed, key, call)
    result = _run_linear(call, x32, packed, bias, start)
    return result if x.dtype == torch.float32 else result.to(x.dtype)


def xnor_linear(
    x: Tensor,
    weight: Tensor | PackedLinearWeight,
    bias: Tensor | None = None,
    scaling: InputScaling | str = "kmap",
) -> Tensor:
    """XNOR Linear, ``(sign(x) @ sign(W)^T) * alpha[o] * beta + bias`` on the last dim of ``x``.

    ``beta = mean |x|`` over the features of each row for ``kmap`` and ``scalar``, 1 for
    ``none`` (as ``xnorlab.binary.binarize.xnor_linear``). Runs as a 1x1 binary conv (binary GEMM).
    """
    return _linear("xnor_linear", x, weight, bias, scaling)


def bwn_linear(
    x: Tensor,
    weight: Tensor | PackedLinearWeight,
    bias: Tensor | None = None,
) -> Tensor:
    """BWN Linear: ``x @ (alpha * sign(W))^T + bias``, float ``x``, 1 bit read per weight.

    Computed as ``alpha[o] * (sum_f x_f - 2 * sum_{f: W_of < 0} x_f) + bias[o]``.
    """
    return _linear("bwn_linear", x, weight, bias, None)


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
        raise _native_error(exc) from exc
