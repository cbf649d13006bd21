"""Inference-only layers that hold 1-bit weights + alpha instead of float weights.

They are what a loaded ``.xnor`` file (``xnorlab.models.xnor_file``) is made of.

Stored bit layout (the ``.xnor`` format, independent of the native engine's kernel order):
a weight ``W`` of shape ``(C_out, ...)`` is flattened per output channel to ``(C_out, n)``;
bit ``1`` means ``W < 0`` (sign -1), bit ``0`` means ``W >= 0`` (sign +1, so ``sign(0) = +1``);
each row is packed with ``numpy.packbits(bitorder="little")`` (element ``j`` of a row is bit
``j % 8`` of byte ``j // 8``) and padded with zero bits to a whole byte. ``alpha`` is one float32
per output channel (``mean |W_c|``), ``bias`` float32 or absent.

At construction the bits are handed to the native engine once (``pack_conv2d_weight`` /
``pack_linear_weight``, which repacks them in its kernel order) for XNOR conv, XNOR linear and
BWN linear. BWN conv has no native kernel: its weight is unpacked to ``alpha * sign`` once and
run with ``F.conv2d`` (a float tensor of the weight's size lives in memory). When the native
engine cannot run a layer (no engine, groups > 1, non-zero padding_mode, 'same' padding), the
layer unpacks once and runs the torch simulation of ``xnorlab.binary.binarize``; ``route`` says
which path a layer takes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xnorlab.binary.binarize import xnor_conv2d, xnor_linear
from xnorlab.binary.layers import LayerConfig
from xnorlab.binary.modes import Mode


def pack_sign_bits(weight: Tensor) -> Tensor:
    """``(C_out, ceil(n/8))`` uint8 rows of sign bits (bit 1 = negative), see module doc."""
    negative = (weight.detach().reshape(weight.shape[0], -1) < 0).cpu().numpy()
    return torch.from_numpy(np.packbits(negative, axis=1, bitorder="little"))


def unpack_signs(bits: Tensor, weight_shape: tuple[int, ...]) -> Tensor:
    """Inverse of ``pack_sign_bits``: a float32 tensor of +-1 of ``weight_shape``."""
    n_per_row = math.prod(weight_shape[1:])
    unpacked = np.unpackbits(bits.cpu().numpy(), axis=1, count=n_per_row, bitorder="little")
    signs = 1.0 - 2.0 * torch.from_numpy(unpacked.astype(np.float32))
    return signs.reshape(weight_shape)


def expected_bits_shape(weight_shape: tuple[int, ...]) -> tuple[int, int]:
    """Shape of the stored bit rows of a weight of ``weight_shape``."""
    return (weight_shape[0], math.ceil(math.prod(weight_shape[1:]) / 8))


def _kernels() -> Any:
    """The native-engine facade, or None when it is not importable."""
    try:
        from xnorlab import engine as kernels
    except ImportError:  # pragma: no cover - the package always has the facade module
        return None
    return kernels if hasattr(kernels, "pack_conv2d_weight") else None


def _engine_route() -> str:
    """``"engine (native avx512)"`` or ``"engine (reference)"`` when the build is missing."""
    try:
        info = _kernels().info()
    except (AttributeError, ImportError, RuntimeError):
        return "engine"
    backend = str(info.get("backend", "?"))
    return f"engine ({backend} {info.get('isa', '')})".replace(" )", ")")


def _native_packed(kind: str, weight: Tensor, alpha: Tensor, bias: Tensor | None) -> Any:
    """Pack ``alpha * sign`` for the engine and make its alpha exactly the stored one."""
    kernels = _kernels()
    if kernels is None:
        return None
    pack = kernels.pack_conv2d_weight if kind == "conv2d" else kernels.pack_linear_weight
    packed = pack(weight, bias)
    state = packed.to_state()
    if "alpha" in state:
        state["alpha"] = alpha.clone()
        packed = type(packed).from_state(state)
    return packed


class _PackedBase(nn.Module):
    """Shared buffers (bits, alpha, bias) and the config of a packed layer."""

    kind = ""
    bits: Tensor
    alpha: Tensor
    bias: Tensor | None

    def __init__(
        self, bits: Tensor, alpha: Tensor, bias: Tensor | None, weight_shape: tuple[int, ...],
        config: LayerConfig,
    ) -> None:  # fmt: skip
        super().__init__()
        if config.mode is Mode.FLOAT:
            raise ValueError("a packed layer must be BWN or XNOR")
        self.weight_shape = tuple(int(d) for d in weight_shape)
        self.config = config
        self.register_buffer("bits", bits)
        self.register_buffer("alpha", alpha)
        self.register_buffer("bias", bias)
        self.route = "torch"
        self._unpacked: Tensor | None = None
        self._native: Any = None

    @property
    def mode(self) -> Mode:
        return self.config.mode

    def unpacked_weight(self) -> Tensor:
        """``alpha * sign`` as float32 (made once, then cached)."""
        if self._unpacked is None:
            signs = unpack_signs(self.bits, self.weight_shape)
            self._unpacked = self.alpha.reshape((-1,) + (1,) * (signs.dim() - 1)) * signs
        return self._unpacked

    def extra_repr(self) -> str:
        shape = "x".join(map(str, self.weight_shape))
        return f"{shape}, mode={self.config.mode}, scaling={self.config.scaling}, via={self.route}"


class PackedConv2d(_PackedBase):
    """A frozen BWN/XNOR conv built from stored bits (see the module docstring for routes)."""

    kind = "conv2d"

    def __init__(
        self, bits: Tensor, alpha: Tensor, bias: Tensor | None, weight_shape: tuple[int, ...],
        config: LayerConfig, geometry: dict[str, Any],
    ) -> None:  # fmt: skip
        super().__init__(bits, alpha, bias, weight_shape, config)
        self.stride = tuple(geometry["stride"])
        self.padding: Any = geometry["padding"]
        if isinstance(self.padding, list):
            self.padding = tuple(self.padding)
        self.dilation = tuple(geometry["dilation"])
        self.groups = int(geometry["groups"])
        self.padding_mode = str(geometry["padding_mode"])
        native_ok = (
            config.mode is Mode.XNOR and self.groups == 1 and self.padding_mode == "zeros"
            and not isinstance(self.padding, str)
        )  # fmt: skip
        if native_ok:
            self._native = _native_packed("conv2d", self.unpacked_weight(), alpha, bias)
        if self._native is not None:
            self.route = _engine_route()
            self._unpacked = None  # only the engine's packed copy stays in memory
        elif config.mode is Mode.BWN:
            self.route = "torch (BWN conv has no native kernel: unpacked to alpha*sign once)"
        else:
            self.route = "torch simulation"

    def forward(self, x: Tensor) -> Tensor:
        if self._native is not None:
            from xnorlab import engine as kernels

            out: Tensor = kernels.xnor_conv2d(
                x, self._native, None, self.stride, self.padding, self.dilation,
                pad_mode=str(self.config.pad_mode), scaling=str(self.config.scaling),
            )  # fmt: skip
            return out
        padding: Any = self.padding
        if self.padding_mode != "zeros":
            pad_h, pad_w = (padding, padding) if isinstance(padding, int) else padding
            x = F.pad(x, (pad_w, pad_w, pad_h, pad_h), mode=self.padding_mode)
            padding = 0
        weight = self.unpacked_weight()
        if self.config.mode is Mode.BWN:
            return F.conv2d(x, weight, self.bias, self.stride, padding, self.dilation, self.groups)
        return xnor_conv2d(
            x, weight, self.bias, self.stride, padding, self.dilation, self.groups,
            scaling=self.config.scaling, pad_mode=self.config.pad_mode,
        )  # fmt: skip


class PackedLinear(_PackedBase):
    """A frozen BWN/XNOR linear layer built from stored bits (native when available)."""

    kind = "linear"

    def __init__(
        self, bits: Tensor, alpha: Tensor, bias: Tensor | None, weight_shape: tuple[int, ...],
        config: LayerConfig,
    ) -> None:  # fmt: skip
        super().__init__(bits, alpha, bias, weight_shape, config)
        self._native = _native_packed("linear", self.unpacked_weight(), alpha, bias)
        self.route = _engine_route() if self._native is not None else "torch simulation"
        if self._native is not None:
            self._unpacked = None

    def forward(self, x: Tensor) -> Tensor:
        if self._native is not None:
            from xnorlab import engine as kernels

            if self.config.mode is Mode.BWN:
                bwn: Tensor = kernels.bwn_linear(x, self._native)
                return bwn
            out: Tensor = kernels.xnor_linear(x, self._native, scaling=str(self.config.scaling))
            return out
        weight = self.unpacked_weight()
        if self.config.mode is Mode.BWN:
            return F.linear(x, weight, self.bias)
        return xnor_linear(x, weight, self.bias, scaling=self.config.scaling)


PackedLayer = PackedConv2d | PackedLinear


def has_packed_layers(model: nn.Module) -> bool:
    """True when ``model`` holds packed layers (it was loaded from a ``.xnor`` file)."""
    return any(isinstance(m, _PackedBase) for m in model.modules())
