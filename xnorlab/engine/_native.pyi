"""Type stub of the private C++ module ``xnorlab._native`` (use ``xnorlab.engine`` instead).

Buffers are passed as raw addresses (``Tensor.data_ptr()``) of contiguous tensors that the
caller keeps alive for the duration of the call; ``xnorlab.engine`` validates every size.
"""

ABI_VERSION: int
COMPILER: str
BUILD_TYPE: str
OC_BLOCK: int

def compiled_isas() -> list[str]: ...
def supported_isas() -> list[str]: ...
def active_isa() -> str: ...
def set_active_isa(name: str) -> None: ...
def get_threads() -> int: ...
def set_threads(threads: int) -> None: ...
def xnor_conv2d(params: list[int]) -> tuple[bool, tuple[float, float, float, float]]:
    """params: batch, channels, height, width, channels_last, out_channels, kernel_h, kernel_w,
    stride_h, stride_w, pad_top, pad_left, pad_bottom, pad_right, dilation_h, dilation_w, out_h,
    out_w, zero_padding, scaling (0 kmap, 1 scalar, 2 none), then the addresses x, weight,
    tap_sums, alpha, bias, out. Returns (input_has_nan, (pack_s, popcount_s, scale_s, total_s))."""

def bwn_linear(
    x: int,
    batch: int,
    features: int,
    weight: int,
    alpha: int,
    bias: int,
    out_features: int,
    out: int,
) -> tuple[float, float, float, float]: ...
def microkernel_rate(kernel: int, channels: int, out_channels: int, seconds: float) -> float:
    """Binary MAC/s of the active ISA's conv micro-kernel (popcount loop + fused output
    transform) on L1-resident data, single thread, for at least ``seconds``."""

def pack_weight(w: int, out_channels: int, channels: int, taps: int, bits: int) -> None: ...
def probe() -> list[int]: ...
