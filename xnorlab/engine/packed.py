"""Packed binary weights: sign bits in kernel order plus alpha and bias, packed once per layer.

Bit layout (shared with the C++ engine, ``native/include/xnorlab/kernels.h``):

* the ``C`` input-channel signs of one filter tap are packed into ``W = ceil(C / 64)`` 64-bit
  words; channel ``c`` is bit ``c % 64`` (bit 0 = least significant) of word ``c // 64``;
* bit value **1 means negative** (sign -1), 0 means +1; ``sign(0) = +1`` and NaN -> +1;
* padding bits (channels ``C .. 64*W-1`` of the last word) are 0, in weights and activations
  alike, so they never count (the dot product uses the true bit count ``taps * C``);
* taps are ordered ``t = ky * kw + kx``.

Storage: :meth:`to_state` holds the canonical bits ``(C_out, taps, W)`` as int64 (exactly
``taps * W * 8`` bytes per filter: 1 bit per weight when ``C % 64 == 0``). In memory the object
keeps the kernel order: output channels blocked by 32, ``bits[block, tap, word, oc % 32]``,
with all-zero words for the channels past ``C_out`` in the last block.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from xnorlab.binary.binarize import NaNInputWarning, weight_scale_alpha
from xnorlab.engine._backend import native_module
from xnorlab.engine._checks import MAX_DIM, MAX_ELEMENTS
from xnorlab.engine.errors import KernelInputError, KernelTypeError

OC_BLOCK = 32
WORD_BITS = 64
LAYOUT_VERSION = 1
_BIT_VALUES = torch.tensor([1 << b if b < 63 else -(1 << 63) for b in range(64)], dtype=torch.int64)


def words_for(channels: int) -> int:
    """64-bit words per packed row of ``channels`` signs: ``ceil(channels / 64)``."""
    return (channels + WORD_BITS - 1) // WORD_BITS


def pack_bits(signs: list[int]) -> list[int]:
    """Pure-Python reference of the bit layout: +-1 (or any number) per channel -> words.

    ``word[c // 64] |= 1 << (c % 64)`` for every ``c`` with ``signs[c] < 0``; unsigned 64-bit
    words, padding bits 0.
    """
    words = [0] * words_for(len(signs))
    for channel, value in enumerate(signs):
        if value < 0:
            words[channel // WORD_BITS] |= 1 << (channel % WORD_BITS)
    return words


def _negative_to_words(negative: Tensor) -> Tensor:
    """Bool ``(..., C)`` (True = negative) -> int64 words ``(..., W)`` (two's complement)."""
    channels = negative.shape[-1]
    words = words_for(channels)
    padded = torch.nn.functional.pad(negative, (0, words * WORD_BITS - channels))
    bits = padded.reshape(*negative.shape[:-1], words, WORD_BITS).to(torch.int64)
    return (bits * _BIT_VALUES).sum(dim=-1)


def words_popcount(words: Tensor) -> Tensor:
    """Popcount of every int64 word (``(...,)`` -> ``(...,)``), in chunks to bound memory."""
    flat = words.reshape(-1)
    out = torch.empty(flat.shape, dtype=torch.int64)
    shifts = torch.arange(WORD_BITS, dtype=torch.int64)
    for start in range(0, flat.numel(), 1 << 16):
        chunk = flat[start : start + (1 << 16)]
        out[start : start + chunk.numel()] = ((chunk.unsqueeze(-1) >> shifts) & 1).sum(dim=-1)
    return out.reshape(words.shape)


def to_kernel_order(canonical: Tensor) -> Tensor:
    """Canonical ``(O, taps, W)`` -> kernel order ``(ceil(O/32), taps, W, 32)`` (zero padded)."""
    out_channels, taps, words = canonical.shape
    blocks = (out_channels + OC_BLOCK - 1) // OC_BLOCK
    padded = torch.zeros((blocks * OC_BLOCK, taps, words), dtype=torch.int64)
    padded[:out_channels] = canonical
    return padded.reshape(blocks, OC_BLOCK, taps, words).permute(0, 2, 3, 1).contiguous()


def from_kernel_order(bits: Tensor, out_channels: int) -> Tensor:
    """Kernel order ``(blocks, taps, W, 32)`` -> canonical ``(O, taps, W)``."""
    blocks, taps, words, _ = bits.shape
    flat = bits.permute(0, 3, 1, 2).reshape(blocks * OC_BLOCK, taps, words)
    return flat[:out_channels].contiguous()


def _pad_blocks(values: Tensor, blocks: int) -> Tensor:
    out = torch.zeros(blocks * OC_BLOCK, dtype=torch.float32)
    out[: values.numel()] = values
    return out


def _pack_kernel_order(weight3: Tensor) -> Tensor:
    """Float ``(O, C, taps)`` -> kernel-order bits (native when available, else torch)."""
    out_channels, channels, taps = weight3.shape
    blocks = (out_channels + OC_BLOCK - 1) // OC_BLOCK
    native = native_module()
    if native is not None:
        src = weight3.to(torch.float32).contiguous()
        bits = torch.empty((blocks, taps, words_for(channels), OC_BLOCK), dtype=torch.int64)
        native.pack_weight(src.numpy(), bits.numpy())
        return bits
    canonical = torch.empty((out_channels, taps, words_for(channels)), dtype=torch.int64)
    for start in range(0, out_channels, 64):  # bounded temporaries for big layers
        rows = weight3[start : start + 64]
        canonical[start : start + rows.shape[0]] = _negative_to_words(rows.transpose(1, 2) < 0)
    return to_kernel_order(canonical)


@dataclass(eq=False)
class _PackedBase:
    bits: Tensor  # kernel order (blocks, taps, W, 32), int64
    alpha: Tensor  # (O,) float32, mean |W| per output filter
    bias: Tensor | None  # (O,) float32
    out_channels: int
    in_channels: int
    taps: int
    tap_sums: Tensor = field(init=False, repr=False)  # (blocks, taps, 32) int32
    alpha_padded: Tensor = field(init=False, repr=False)
    bias_padded: Tensor = field(init=False, repr=False)
    # Native objects of recent calls (validated parameters keyed by input shape and settings,
    # filled and read by xnorlab.engine) and the engine's view of the buffers above. Caches only:
    # dropped by copy and pickle, rebuilt by the next call.
    call_cache: dict[Any, Any] = field(default_factory=dict, init=False, repr=False)
    _native_buffers: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        blocks = self.bits.shape[0]
        canonical = from_kernel_order(self.bits, self.out_channels)
        popcount = words_popcount(canonical).sum(dim=-1)  # (O, taps)
        sums = torch.zeros((blocks * OC_BLOCK, self.taps), dtype=torch.int32)
        sums[: self.out_channels] = (self.in_channels - 2 * popcount).to(torch.int32)
        self.tap_sums = sums.reshape(blocks, OC_BLOCK, self.taps).permute(0, 2, 1).contiguous()
        self.alpha_padded = _pad_blocks(self.alpha, blocks)
        bias = self.bias if self.bias is not None else torch.zeros(0)
        self.bias_padded = _pad_blocks(bias, blocks)

    def __getstate__(self) -> dict[str, Any]:
        """The tensors and sizes; the caches of native objects are dropped (not picklable)."""
        state = dict(self.__dict__)
        state["call_cache"] = {}
        state["_native_buffers"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def native_buffers(self, native: Any) -> Any:
        """The engine's ``PackedBuffers`` over this weight's tensors (built once, then cached).

        ``native`` is the loaded native module; the object holds numpy views of ``bits``,
        ``tap_sums``, ``alpha_padded`` and ``bias_padded``, so they live as long as it does.
        """
        if self._native_buffers is None:
            self._native_buffers = native.PackedBuffers(
                bits=self.bits.numpy(), tap_sums=self.tap_sums.numpy(),
                alpha=self.alpha_padded.numpy(), bias=self.bias_padded.numpy(),
                out_channels=self.out_channels, in_channels=self.in_channels,
            )  # fmt: skip
        return self._native_buffers

    @property
    def words(self) -> int:
        """64-bit words per packed tap row: ``ceil(in_channels / 64)``."""
        return words_for(self.in_channels)

    @property
    def weight_bytes(self) -> int:
        """Bytes of the packed sign bits: ``C_out * taps * ceil(C_in / 64) * 8``."""
        return self.out_channels * self.taps * self.words * 8

    def signs(self) -> Tensor:
        """The +-1 float weight ``(O, C, taps)`` these bits encode (for the reference)."""
        canonical = from_kernel_order(self.bits, self.out_channels)
        shifts = torch.arange(WORD_BITS, dtype=torch.int64)
        neg = ((canonical.unsqueeze(-1) >> shifts) & 1).reshape(self.out_channels, self.taps, -1)
        neg = neg[..., : self.in_channels].transpose(1, 2)
        return 1.0 - 2.0 * neg.to(torch.float32)

    def _state(self, shape: list[int]) -> dict[str, Tensor]:
        state = {
            "bits": from_kernel_order(self.bits, self.out_channels),
            "alpha": self.alpha.clone(),
            "shape": torch.tensor(shape, dtype=torch.int64),
            "layout_version": torch.tensor([LAYOUT_VERSION], dtype=torch.int64),
        }
        if self.bias is not None:
            state["bias"] = self.bias.clone()
        return state


@dataclass(eq=False)
class PackedConv2dWeight(_PackedBase):
    """A conv weight packed once: sign bits (kernel order), alpha = mean |W| per filter, bias.

    Build with :func:`pack_conv2d_weight`; store with :meth:`to_state` / :meth:`from_state`.
    """

    kernel_size: tuple[int, int] = (1, 1)

    def to_state(self) -> dict[str, Tensor]:
        """Plain tensors: ``bits`` int64 ``(O, kh*kw, ceil(C/64))`` canonical, ``alpha``,
        optional ``bias``, ``shape`` ``[O, C, kh, kw]``, ``layout_version``."""
        return self._state([self.out_channels, self.in_channels, *self.kernel_size])

    @classmethod
    def from_state(cls, state: dict[str, Tensor]) -> PackedConv2dWeight:
        """Rebuild from :meth:`to_state` output; raises ``KernelInputError`` if inconsistent."""
        shape, bits, alpha, bias = _read_state(state, rank=4)
        out_channels, in_channels, kh, kw = shape
        return cls(to_kernel_order(bits), alpha, bias, out_channels, in_channels, kh * kw, (kh, kw))


@dataclass(eq=False)
class PackedLinearWeight(_PackedBase):
    """A Linear weight packed once (taps = 1): sign bits, alpha per output row, bias."""

    @property
    def in_features(self) -> int:
        return self.in_channels

    @property
    def out_features(self) -> int:
        return self.out_channels

    def to_state(self) -> dict[str, Tensor]:
        """Plain tensors: ``bits`` int64 ``(O, 1, ceil(F/64))``, ``alpha``, optional ``bias``,
        ``shape`` ``[O, F]``, ``layout_version``."""
        return self._state([self.out_channels, self.in_channels])

    @classmethod
    def from_state(cls, state: dict[str, Tensor]) -> PackedLinearWeight:
        """Rebuild from :meth:`to_state` output; raises ``KernelInputError`` if inconsistent."""
        shape, bits, alpha, bias = _read_state(state, rank=2)
        out_features, in_features = shape
        return cls(to_kernel_order(bits), alpha, bias, out_features, in_features, 1)


def _read_state(state: Any, rank: int) -> tuple[list[int], Tensor, Tensor, Tensor | None]:
    if not isinstance(state, dict) or not {"bits", "alpha", "shape"} <= state.keys():
        raise KernelInputError("packed weight state needs the tensors 'bits', 'alpha', 'shape'")
    for key, value in state.items():
        if not isinstance(value, Tensor):
            raise KernelTypeError(f"packed weight state entry {key!r} is not a tensor")
    version = state.get("layout_version")
    if version is not None and version.tolist() != [LAYOUT_VERSION]:
        raise KernelInputError(f"packed weight layout {version.tolist()} is not {LAYOUT_VERSION}")
    shape = [int(v) for v in state["shape"].reshape(-1).tolist()]
    if len(shape) != rank or min(shape) < 1 or max(shape) > MAX_DIM:
        raise KernelInputError(f"packed weight shape {shape} is not a valid rank-{rank} shape")
    out_channels, in_channels = shape[0], shape[1]
    taps = shape[2] * shape[3] if rank == 4 else 1
    if in_channels * taps > MAX_DIM:  # K = C * kh * kw bits per output
        raise KernelInputError(f"packed weight shape {shape} has too many inputs per output")
    bits = state["bits"]
    if bits.dtype == torch.uint8:  # allowed on disk: little-endian bytes of the words
        bits = bits.contiguous().view(torch.int64) if bits.shape[-1] % 8 == 0 else bits
    expected = (out_channels, taps, words_for(in_channels))
    if bits.dtype != torch.int64 or tuple(bits.shape) != expected:
        raise KernelInputError(
            f"packed bits must be int64 of shape {expected}, got {bits.dtype} {tuple(bits.shape)}"
        )
    _check_padding_bits(bits, in_channels)
    alpha = _float_vector(state["alpha"], out_channels, "alpha")
    bias = _float_vector(state["bias"], out_channels, "bias") if "bias" in state else None
    return shape, bits.contiguous(), alpha, bias


def _check_padding_bits(bits: Tensor, in_channels: int) -> None:
    used = in_channels % WORD_BITS
    if used == 0:
        return
    high = bits[..., -1] >> used  # arithmetic shift: zero iff every padding bit is 0
    if bool((high != 0).any()):
        raise KernelInputError("packed bits have padding bits set past the last input channel")


def _float_vector(value: Tensor, length: int, name: str) -> Tensor:
    if not value.is_floating_point() or tuple(value.shape) != (length,):
        raise KernelInputError(f"{name} must be a float tensor of shape ({length},)")
    if not bool(torch.isfinite(value).all()):
        raise KernelInputError(f"{name} contains NaN or infinity")
    return value.detach().to(torch.float32).contiguous()


def _check_weight(weight: Tensor | Any, rank: int, what: str) -> Tensor:
    if not isinstance(weight, Tensor):
        raise KernelTypeError(f"{what} weight must be a torch.Tensor, got {type(weight).__name__}")
    if not weight.is_floating_point():
        raise KernelTypeError(f"{what} weight must be a float tensor, got {weight.dtype}")
    if weight.device.type != "cpu":
        raise KernelInputError(f"{what} weight must be on the CPU, got {weight.device}")
    if weight.dim() != rank:
        raise KernelInputError(f"{what} weight must have {rank} dims, got {tuple(weight.shape)}")
    if weight.numel() == 0:
        raise KernelInputError(f"{what} weight is empty: {tuple(weight.shape)}")
    if max(weight.shape) > MAX_DIM or weight.numel() > MAX_ELEMENTS:
        raise KernelInputError(f"{what} weight too large: {tuple(weight.shape)}")
    if weight.numel() // weight.shape[0] > MAX_DIM:  # K = C * kh * kw bits per output
        raise KernelInputError(
            f"{what} weight has too many inputs per output: {tuple(weight.shape)}"
        )
    detached: Tensor = weight.detach()
    if bool(torch.isnan(detached).any()):
        warnings.warn(
            "sign(): input contains NaN; NaN is binarized to +1", NaNInputWarning, stacklevel=3
        )
    return detached


def _check_bias(bias: Any, out_channels: int) -> Tensor | None:
    if bias is None:
        return None
    if not isinstance(bias, Tensor) or not bias.is_floating_point():
        raise KernelTypeError("bias must be a float tensor or None")
    if bias.device.type != "cpu" or tuple(bias.shape) != (out_channels,):
        raise KernelInputError(
            f"bias must be a CPU tensor of shape ({out_channels},), got {tuple(bias.shape)}"
        )
    return bias.detach().to(torch.float32).contiguous()


def pack_conv2d_weight(weight: Tensor, bias: Tensor | None = None) -> PackedConv2dWeight:
    """Pack a float conv weight ``(C_out, C_in, kh, kw)`` once (sign bits + alpha + bias).

    ``alpha = mean |W|`` per output filter (``xnorlab.binary.binarize.weight_scale_alpha``).
    """
    weight = _check_weight(weight, 4, "conv")
    out_channels, in_channels, kh, kw = (int(v) for v in weight.shape)
    bits = _pack_kernel_order(weight.reshape(out_channels, in_channels, kh * kw))
    alpha = weight_scale_alpha(weight).to(torch.float32).contiguous()
    return PackedConv2dWeight(
        bits, alpha, _check_bias(bias, out_channels), out_channels, in_channels, kh * kw, (kh, kw)
    )


def pack_linear_weight(weight: Tensor, bias: Tensor | None = None) -> PackedLinearWeight:
    """Pack a float Linear weight ``(out_features, in_features)`` once."""
    weight = _check_weight(weight, 2, "linear")
    out_features, in_features = (int(v) for v in weight.shape)
    bits = _pack_kernel_order(weight.reshape(out_features, in_features, 1))
    alpha = weight_scale_alpha(weight).to(torch.float32).contiguous()
    return PackedLinearWeight(
        bits, alpha, _check_bias(bias, out_features), out_features, in_features, 1
    )
