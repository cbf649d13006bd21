"""The modules a deployed model runs: fused XNOR convs, BatchNorms as one multiply-add, and
the engine's max pool (:func:`xnorlab.runtime.deploy.deploy` puts them in the graph).

An eval BatchNorm2d after an XNOR conv is folded into the conv's per-channel scale and shift,

    (dot * alpha * S + b) * g + h  ==  dot * (alpha * g) * S + (b * g + h),
    g = gamma / sqrt(running_var + eps),  h = beta - running_mean * g

(equal up to float rounding); the shortcut add and the clamp run in the engine's epilogue
(``xnorlab.engine.Epilogue``: ``clamp(out + shortcut, lo, hi)``, in torch's order), a
BatchNorm before the conv in its prologue (``xnorlab.engine.Prologue``: ``clamp(x * g + h, lo,
hi)`` while the engine packs the input).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from xnorlab.binary.layers import BinConv2d
from xnorlab.engine import (
    ChainStep,
    ConvChain,
    Epilogue,
    KernelInputError,
    PackedActivation,
    PreparedConv2d,
    Prologue,
    max_pool2d,
    xnor_conv2d,
)
from xnorlab.engine._checks import conv_geometry
from xnorlab.engine.packed import PackedConv2dWeight
from xnorlab.runtime.integration import packed_weight


class FusedXnorConv(nn.Module):
    """An XNOR conv with its folded BatchNorm (if any), an optional shortcut add and an optional
    clamp: one engine call ``clamp(dot * alpha' * S + b' + shortcut, low, high)``; with a
    ``prologue`` the conv binarizes ``clamp(x * g + h, lo, hi)`` (the BatchNorm before it)."""

    def __init__(
        self, conv: BinConv2d, bn: nn.BatchNorm2d | None, bounds: tuple[float, float] | None
    ) -> None:
        super().__init__()
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.pad_mode, self.scaling = conv.config.pad_mode, conv.config.scaling
        self.bounds = bounds
        self._prologue: Prologue | None = None
        packed = packed_weight(conv)
        assert isinstance(packed, PackedConv2dWeight)
        self.packed = packed if bn is None else fold_batchnorm(packed, bn)
        self._fits: dict[tuple[Any, ...], bool] = {}  # per (input, shortcut) shape
        self._prepared: dict[torch.Size, PreparedConv2d] = {}  # per input shape
        # The fused conv that alone reads this output, if it may take it packed (a tuple: a
        # module attribute would register it as a submodule).
        self._reader: tuple[FusedXnorConv, ...] = ()

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles leave the prepared native calls behind (made again on use)."""
        state = dict(vars(self))
        state["_prepared"] = {}
        return state

    def write_bits_for(self, reader: FusedXnorConv) -> None:
        """Hand ``reader`` (which alone reads this output, as its input) its packed input
        instead of a float output, once both calls are prepared for the shapes they see."""
        self._reader = (reader,)

    def forward(self, x: Tensor | PackedActivation, shortcut: Tensor | None = None) -> Any:
        if isinstance(x, PackedActivation):
            return self._read_packed(x, shortcut)
        prepared = self._prepared.get(x.shape)
        if prepared is not None and (shortcut is None or shortcut.shape == prepared.out_shape):
            if self._reader and prepared.native:
                self._link_reader(prepared)
            return prepared(x, shortcut)
        if shortcut is None or self._shortcut_fits(x, shortcut):
            out = self._conv(x, Epilogue(shortcut, self.bounds))
            self._prepare(x)  # after the facade accepted x: its errors are the clear ones
            return out
        # A shortcut that broadcasts: the add and the clamp run in torch, after the conv.
        out = self._conv(x, Epilogue()) + shortcut
        return out if self.bounds is None else out.clamp(*self.bounds)

    def _link_reader(self, prepared: PreparedConv2d) -> None:
        """Point ``prepared`` at the reader's prepared call for its output when that call can
        take packed input (native, no prologue); else back to a float output."""
        reader = self._reader[0]._prepared.get(prepared.out_shape)
        if reader is not None and (not reader.native or reader.prologue is not None):
            reader = None
        if reader is not prepared.next:
            prepared.bits_for(reader)

    def _read_packed(self, x: PackedActivation, shortcut: Tensor | None) -> Any:
        """This conv on the packed input the conv before it wrote for it. Shapes follow from
        the input's in a traced graph, so the shortcut fits as it did when prepared."""
        if x.reader.weight is not self.packed:
            raise KernelInputError("a packed activation can only be read by the conv it is for")
        if shortcut is not None and shortcut.shape != x.reader.out_shape:
            raise KernelInputError("the shortcut of a packed input must have the output's shape")
        return x.reader(x, shortcut)

    def prepared_for(self, shape: torch.Size) -> PreparedConv2d | None:
        """The call prepared for inputs of ``shape``, once one ran (None before)."""
        return self._prepared.get(shape)

    @property
    def prologue(self) -> Prologue | None:
        """The transform of the input before the sign (the BatchNorm before the conv)."""
        return self._prologue

    @prologue.setter
    def prologue(self, value: Prologue | None) -> None:
        self._prologue = value
        self._prepared.clear()  # prepared with the previous prologue

    def _prepare(self, x: Tensor) -> None:
        """Validate the call for ``x``'s shape once (the facade's per-call checks are then
        skipped for inputs of that shape in the engine's layout)."""
        if x.dim() != 4:
            return
        if len(self._prepared) > 16:
            self._prepared.clear()
        self._prepared[x.shape] = PreparedConv2d(
            tuple(x.shape), self.packed, self.stride, self.padding, self.dilation,
            self.pad_mode, self.scaling, self.bounds, self._prologue,
        )  # fmt: skip

    def _conv(self, x: Tensor, epilogue: Epilogue) -> Tensor:
        out: Tensor = xnor_conv2d(
            x, self.packed, None, self.stride, self.padding, self.dilation,
            pad_mode=self.pad_mode, scaling=self.scaling, epilogue=epilogue,
            prologue=self._prologue,
        )  # fmt: skip
        return out

    def _shortcut_fits(self, x: Tensor, shortcut: Tensor) -> bool:
        """Whether ``shortcut`` has the conv output's shape (the engine adds no broadcast)."""
        key = (tuple(x.shape), tuple(shortcut.shape))
        fits = self._fits.get(key)
        if fits is None:
            if len(self._fits) > 16:
                self._fits.clear()
            geo = conv_geometry(x.shape, self.packed.kernel_size, self.packed.out_channels,
                                self.stride, self.padding, self.dilation)  # fmt: skip
            out_shape = (int(x.shape[0]), self.packed.out_channels, geo.out_h, geo.out_w)
            fits = self._fits[key] = key[1] == out_shape
        return fits

    def extra_repr(self) -> str:
        packed = self.packed
        prologue = "" if self.prologue is None else f", prologue_clamp={self.prologue.clamp}"
        return (
            f"{packed.in_channels}, {packed.out_channels}, kernel_size={packed.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, clamp={self.bounds}{prologue}"
        )


class EngineChain(nn.Module):
    """Consecutive fused XNOR convs of a deployed graph (a network's residual blocks) run as one
    engine call (``xnorlab.engine.ConvChain``). ``wiring[k]`` is conv ``k``'s (input slot,
    shortcut slot or None); slot 0 is the chain's input, slot ``k`` the output of conv
    ``k - 1``; the chain's output is the last conv's.

    The first input of a shape runs the convs one by one (each prepares its call); later
    inputs of that shape run the chain of those calls (same results, the same engine calls).
    ``adaptive_threads`` is the chains' (``xnorlab.engine.ConvChain``; None: the environment's
    default).
    """

    def __init__(self, convs: list[FusedXnorConv], wiring: list[tuple[int, int | None]]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(convs)
        self.wiring = tuple(wiring)
        self._chains: dict[torch.Size, ConvChain | None] = {}  # None: not chainable
        self._adaptive_threads: bool | None = None

    @property
    def adaptive_threads(self) -> bool | None:
        """Whether the chains choose per run between the engine's threads and one (None: the
        ``XNORLAB_ADAPTIVE_THREADS`` default)."""
        return self._adaptive_threads

    @adaptive_threads.setter
    def adaptive_threads(self, value: bool | None) -> None:
        self._adaptive_threads = value
        self._chains.clear()  # made again with the new setting

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles leave the native chains behind (made again on use)."""
        state = dict(vars(self))
        state["_chains"] = {}
        return state

    def forward(self, x: Tensor) -> Tensor:
        chain = self._chains.get(x.shape)
        if chain is not None:
            return chain(x)
        values: list[Tensor] = [x]
        for conv, (source, shortcut) in zip(self.convs, self.wiring, strict=True):
            args = (values[source],) if shortcut is None else (values[source], values[shortcut])
            values.append(conv(*args))
        if x.shape not in self._chains:
            if len(self._chains) > 16:
                self._chains.clear()
            self._chains[x.shape] = self._chain_for(values)
        return values[-1]

    def _chain_for(self, values: list[Tensor]) -> ConvChain | None:
        """The chain of the calls the convs prepared for these values' shapes, or None when one
        of them ran otherwise (no native engine, a shortcut that broadcasts)."""
        steps = []
        for conv, (source, shortcut) in zip(self.convs, self.wiring, strict=True):
            assert isinstance(conv, FusedXnorConv)
            value = values[source]
            prepared = conv.prepared_for(value.shape) if type(value) is Tensor else None
            if prepared is None or not prepared.native or prepared.next is not None:
                return None
            if shortcut is not None and values[shortcut].shape != prepared.out_shape:
                return None
            steps.append(ChainStep(prepared, source, shortcut))
        return ConvChain(steps, self._adaptive_threads)

    def extra_repr(self) -> str:
        return f"wiring={list(self.wiring)}"


class AffineClamp(nn.Module):
    """An eval BatchNorm2d, and the clamp after it if any, as one multiply-add and an in-place
    clamp: ``clamp(x * g + h, low, high)`` (``g``, ``h`` as in the module doc), which skips
    BatchNorm's own pass and the clamp's new tensor (equal up to float rounding)."""

    scale: Tensor
    shift: Tensor

    def __init__(self, bn: nn.BatchNorm2d, bounds: tuple[float, float] | None) -> None:
        super().__init__()
        scale, shift = batchnorm_affine(bn)
        self.register_buffer("scale", scale.view(1, -1, 1, 1))
        self.register_buffer("shift", shift.view(1, -1, 1, 1))
        self.bounds = bounds

    def forward(self, x: Tensor) -> Tensor:
        out = torch.addcmul(self.shift, x, self.scale)
        return out if self.bounds is None else out.clamp_(*self.bounds)

    def extra_repr(self) -> str:
        return f"{self.scale.numel()}, clamp={self.bounds}"


class EngineMaxPool2d(nn.Module):
    """``nn.MaxPool2d`` (no dilation, no ceil mode, no indices) run by the engine on
    channels_last float32 input, torch's values bit for bit (``xnorlab.engine.max_pool2d``);
    with ``bounds`` the clamp before it (a ResNet stem's ReLU) applied to its output instead,
    in the same pass (max is monotonic: equal up to the sign of a zero)."""

    def __init__(self, pool: nn.MaxPool2d, bounds: tuple[float, float] | None = None) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = pool.kernel_size, pool.stride, pool.padding
        self.bounds = bounds

    def forward(self, x: Tensor) -> Tensor:
        return max_pool2d(x, self.kernel_size, self.stride, self.padding, self.bounds)

    def extra_repr(self) -> str:
        clamp = "" if self.bounds is None else f", clamp_before={self.bounds}"
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}{clamp}"
        )


def batchnorm_affine(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """The per-channel ``(g, h)`` with ``bn(x) == x * g + h`` in eval mode (module doc)."""
    assert bn.running_mean is not None and bn.running_var is not None
    scale = torch.rsqrt(bn.running_var.detach().to(torch.float32) + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach().to(torch.float32)
    shift = -bn.running_mean.detach().to(torch.float32) * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach().to(torch.float32)
    return scale.contiguous(), shift.contiguous()


def fold_batchnorm(packed: PackedConv2dWeight, bn: nn.BatchNorm2d) -> PackedConv2dWeight:
    """A packed weight whose alpha and bias include the eval-mode BatchNorm ``bn`` (module doc)."""
    scale, shift = batchnorm_affine(bn)
    bias = shift if packed.bias is None else packed.bias * scale + shift
    return PackedConv2dWeight(
        packed.bits, (packed.alpha * scale).contiguous(), bias.contiguous(),
        packed.out_channels, packed.in_channels, packed.taps, packed.kernel_size,
    )  # fmt: skip


__all__ = [
    "AffineClamp",
    "EngineChain",
    "EngineMaxPool2d",
    "FusedXnorConv",
    "batchnorm_affine",
    "fold_batchnorm",
]
