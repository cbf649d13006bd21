"""Type stub of the private C++ module ``xnorlab.engine._native`` (use ``xnorlab.engine``).

Calls take typed objects, never addresses: a ``ConvParams`` (validated conv geometry), a
``PackedBuffers`` (the arrays of one packed weight, validated once) and numpy arrays, usually
views of torch tensors, which the call holds while it runs. Every dtype, shape, memory order and
size is checked in C++: bad values raise ``ValueError``, bad types or dtypes ``TypeError``.
Outputs are allocated by the call (64-byte aligned float32) and returned.
"""

from typing import Any

import numpy as np
import numpy.typing as npt

ABI_VERSION: int
COMPILER: str
BUILD_TYPE: str
OC_BLOCK: int
MAX_DIM: int  # every size, geometry parameter, padded extent and K = C * kh * kw
MAX_ELEMENTS: int  # every buffer the engine reads, writes or allocates

Float32Array = npt.NDArray[np.float32]
Timing = tuple[float, float, float, float]  # (pack_s, popcount_s, scale_s, total_s)

class ConvParams:
    """Validated geometry of one conv call; immutable, checked on creation."""

    def __init__(
        self,
        *,
        input_shape: tuple[int, int, int, int],  # (N, C, H, W)
        channels_last: bool,  # the input's memory is NHWC (else NCHW)
        out_channels: int,
        kernel: tuple[int, int],  # (kh, kw)
        stride: tuple[int, int],
        dilation: tuple[int, int],
        pad_top: int,
        pad_bottom: int,
        pad_left: int,
        pad_right: int,
        pad_mode: str,  # "zero" | "one"
        scaling: str,  # "kmap" | "scalar" | "none"
    ) -> None: ...
    @property
    def input_shape(self) -> tuple[int, int, int, int]: ...
    @property
    def channels_last(self) -> bool: ...
    @property
    def out_channels(self) -> int: ...
    @property
    def kernel(self) -> tuple[int, int]: ...
    @property
    def stride(self) -> tuple[int, int]: ...
    @property
    def dilation(self) -> tuple[int, int]: ...
    @property
    def padding(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right)"""
    @property
    def pad_mode(self) -> str: ...
    @property
    def scaling(self) -> str: ...
    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        """(N, C_out, H_out, W_out)"""

class PackedBuffers:
    """The arrays of one packed weight (kernel order), validated once and kept alive."""

    def __init__(
        self,
        *,
        bits: npt.NDArray[np.int64],  # (blocks, taps, ceil(C / 64), 32)
        tap_sums: npt.NDArray[np.int32],  # (blocks, taps, 32)
        alpha: Float32Array,  # (blocks * 32,)
        bias: Float32Array,  # (blocks * 32,), zeros without a bias
        out_channels: int,
        in_channels: int,
    ) -> None: ...
    @property
    def out_channels(self) -> int: ...
    @property
    def in_channels(self) -> int: ...
    @property
    def taps(self) -> int: ...

# One step of a ConvChain: (params, weight, input slot, residual slot or None, clamp,
# prologue_scale, prologue_shift, prologue_clamp); slot 0 is the chain's input, slot k the
# output of step k - 1.
ChainItem = tuple[
    ConvParams, PackedBuffers, int, int | None, tuple[float, float] | None,
    Float32Array | None, Float32Array | None, tuple[float, float] | None,
]  # fmt: skip

class ConvChain:
    """Several XNOR conv calls run as one (NHWC input, packed bias), validated on creation:
    every slot names the chain input or an earlier step's output of the shape its step
    needs; step 0 reads the chain input."""

    def __init__(self, steps: list[ChainItem]) -> None: ...
    def __len__(self) -> int: ...
    def run(self, x: Float32Array) -> tuple[Any, list[bool], list[Timing]]:
        """The chain on ``x`` (the first step's input shape, NHWC memory): the last step's
        output (NHWC, new), and per step whether its input had NaN and its timing."""

def compiled_isas() -> list[str]: ...
def supported_isas() -> list[str]: ...
def active_isa() -> str: ...
def set_active_isa(name: str) -> None: ...
def get_threads() -> int: ...
def set_threads(threads: int) -> None: ...
def get_thread_pool() -> str: ...
def set_thread_pool(name: str) -> None: ...
def region_places(regions: int) -> list[list[tuple[int, int]]]: ...
def xnor_conv2d(
    params: ConvParams,
    weight: PackedBuffers,
    x: Float32Array,
    bias: Float32Array | None = None,
    residual: Float32Array | None = None,
    clamp: tuple[float, float] | None = None,
    prologue_scale: Float32Array | None = None,
    prologue_shift: Float32Array | None = None,
    prologue_clamp: tuple[float, float] | None = None,
    bits_for: ConvParams | None = None,
) -> tuple[Any, bool, Timing]:
    """XNOR conv2d of ``x`` (``params.input_shape``, NCHW or NHWC memory per
    ``params.channels_last``). Returns ``(out, input_has_nan, timing)``; ``out`` has shape
    ``params.out_shape`` in NHWC memory (channels_last). ``bias`` overrides the packed one.
    Fused epilogue: ``out = clamp(out + residual, lo, hi)`` with ``residual`` of
    ``params.out_shape`` in NHWC memory and ``clamp = (lo, hi)``, ``lo <= hi``. Fused
    prologue (NHWC input only): the conv takes ``clamp(x * prologue_scale[c] +
    prologue_shift[c], lo, hi)`` for ``x``, both arrays of ``C`` float32. With ``bits_for``
    (the ConvParams of the conv that reads this output) ``out`` is that conv's packed input,
    ``(bits int64 (words,), block_absum float32 (pixels, blocks))``."""

def xnor_conv2d_packed(
    params: ConvParams,
    weight: PackedBuffers,
    bits: Any,
    block_absum: Float32Array,
    bias: Float32Array | None = None,
    residual: Float32Array | None = None,
    clamp: tuple[float, float] | None = None,
    bits_for: ConvParams | None = None,
) -> tuple[Any, bool, Timing]:
    """XNOR conv2d of the packed input another conv's ``bits_for=params`` call returned;
    otherwise as :func:`xnor_conv2d`."""

def max_pool2d(
    x: Float32Array,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    clamp: tuple[float, float] | None = None,
) -> Float32Array:
    """Max pool of ``x`` (N, C, H, W) in NHWC memory; returns the NHWC output, torch's
    ``max_pool2d`` values bit for bit (padding at most half the kernel, no dilation), then
    ``clamp = (lo, hi)`` by torch's rule when given (``lo <= hi``, no NaN)."""

def xnor_linear(
    weight: PackedBuffers, x: Float32Array, scaling: str, bias: Float32Array | None = None
) -> tuple[Float32Array, bool, Timing]:
    """XNOR Linear on the last dim of ``x`` (..., F), 1 to 8 dims; returns
    ``(out (..., O), input_has_nan, timing)``. ``scaling`` "kmap" and "scalar" both give the
    mean ``|x|`` of each row, "none" gives 1."""

def bwn_linear(
    weight: PackedBuffers, x: Float32Array, bias: Float32Array | None = None
) -> tuple[Float32Array, Timing]:
    """BWN Linear on the last dim of ``x`` (..., F), 1 to 8 dims; returns
    ``(out (..., O), timing)``."""

def microkernel_rate(kernel: int, channels: int, out_channels: int, seconds: float) -> float:
    """Binary MAC/s of the active ISA's conv micro-kernel (popcount loop + fused output
    transform) on L1-resident data, single thread, for at least ``seconds``."""

def pack_weight(weight: Float32Array, bits: npt.NDArray[np.int64]) -> None:
    """Pack a float weight (O, C, taps) into ``bits`` (blocks, taps, ceil(C / 64), 32)."""

def probe() -> list[int]: ...
