"""Per-call timing of the native engine: ``with profile() as records: ...``.

Each native call made inside the block appends one :class:`KernelTiming`. The split
(pack / popcount / scale) is measured in C++ with ``std::chrono::steady_clock``; ``total_s`` is
the wall time of the Python call (validation, allocation, the call itself), and
``other_s = total_s - pack_s - popcount_s - scale_s``. Outside a ``profile()`` block nothing is
recorded and the only cost is one context-variable lookup per call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

_ACTIVE: ContextVar[tuple[list[KernelTiming], ...]] = ContextVar("xnorlab_profile", default=())


@dataclass(frozen=True)
class KernelTiming:
    """Timing of one native call.

    Attributes
    ----------
    op : ``"xnor_conv2d"``, ``"xnor_linear"`` or ``"bwn_linear"``.
    shape : input shape as given by the caller.
    weight_shape : logical weight shape ``(C_out, C_in, kh, kw)`` or ``(out, in)``.
    out_shape : output shape.
    binary_macs : multiply-accumulates of the layer (``N*H_out*W_out*C_out*C_in*kh*kw``);
        one MAC = 2 ops when converting to GOP/s.
    isa, threads : engine state during the call.
    pack_s : sign + bit-pack of the input fused with sum |x| (BWN: input copy + row sums).
    popcount_s : the xor/popcount (or masked-add) loop with the fused output transform.
    scale_s : K map / beta from the packed pass's sums and the NaN check.
    other_s : everything else paid in the Python call (validation, output allocation, the call).
    total_s : wall time of the whole facade call.
    """

    op: str
    shape: tuple[int, ...]
    weight_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    binary_macs: int
    isa: str
    threads: int
    pack_s: float
    popcount_s: float
    scale_s: float
    other_s: float
    total_s: float


def is_profiling() -> bool:
    """True inside a :func:`profile` block (the facade skips the bookkeeping otherwise)."""
    return bool(_ACTIVE.get())


def record(timing: KernelTiming) -> None:
    """Append ``timing`` to every active :func:`profile` list."""
    for records in _ACTIVE.get():
        records.append(timing)


@contextmanager
def profile() -> Iterator[list[KernelTiming]]:
    """Collect a :class:`KernelTiming` for every native call made inside the block.

    Blocks nest (an inner call is recorded in every enclosing list) and are per thread / task.
    """
    records: list[KernelTiming] = []
    token = _ACTIVE.set((*_ACTIVE.get(), records))
    try:
        yield records
    finally:
        _ACTIVE.reset(token)
