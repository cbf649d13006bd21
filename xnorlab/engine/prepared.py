"""``PreparedConv2d``: an XNOR conv validated once for one input shape, and the packed
activation it can hand the next conv."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from xnorlab.binary.binarize import NaNInputWarning
from xnorlab.binary.modes import InputScaling, PadMode
from xnorlab.engine._backend import native_module
from xnorlab.engine._calls import (
    NAN_MESSAGE,
    ConvCall,
    buffers,
    conv_params,
    native_error,
    record_conv,
)
from xnorlab.engine._checks import MAX_DIM, conv_geometry, parse_pad_mode, parse_scaling
from xnorlab.engine.conv import xnor_conv2d
from xnorlab.engine.errors import KernelConfigError, KernelInputError, KernelTypeError
from xnorlab.engine.fused import Epilogue, Prologue, numpy_view
from xnorlab.engine.packed import PackedConv2dWeight
from xnorlab.engine.profiling import is_profiling


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
        if prologue is not None:
            prologue.check(weight.in_channels)
        native = native_module()
        self._call: ConvCall | None = None
        self._prologue_args: tuple[Any, Any, Any] = (None, None, None)
        if native is not None:
            if prologue is not None:
                self._prologue_args = (*prologue.arrays, prologue.clamp)
            probe = torch.empty(self.input_shape, device="meta")  # only its shape is read
            params = conv_params(native, probe, True, weight, geo, parse_pad_mode(pad_mode),
                                  parse_scaling(scaling))  # fmt: skip
            self._call = (native.xnor_conv2d, params, buffers(native, weight))
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

    def chain_item(self, input_slot: int, residual_slot: int | None) -> tuple[Any, ...]:
        """This call as a step of the native ``ConvChain`` (``xnorlab.engine.chain``)."""
        assert self._call is not None
        _, params, buffers = self._call
        return (params, buffers, input_slot, residual_slot, self.clamp, *self._prologue_args)

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
            raise native_error(exc) from exc
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
            raise native_error(exc) from exc
        return self._finish(out, has_nan, split, start)

    def _next_params(self) -> Any:
        return None if self.next is None or self.next._call is None else self.next._call[1]

    def _finish(self, out: Any, has_nan: bool, split: Any, start: float) -> Any:
        """The call's result (a tensor, or the next conv's packed input), its NaN warning and
        its profile record."""
        if has_nan:
            warnings.warn(NAN_MESSAGE, NaNInputWarning, stacklevel=3)
        if self.next is not None:
            result: Any = PackedActivation(out[0], out[1], self.out_shape, self.next)
        else:
            result = torch.from_numpy(out)
        if is_profiling():
            record_conv(self.input_shape, self.weight, self.out_shape, split, start)
        return result
