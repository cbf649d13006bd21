"""Loading of the native module and engine settings (ISA, threads, reference override).

``XNORLAB_KERNEL=reference`` (read at import) forces the pure-PyTorch reference;
``XNORLAB_ISA=scalar|avx2|avx512`` forces an ISA (read by the native module once);
``XNORLAB_THREADS=n`` sets the default thread count of the native pool;
``XNORLAB_THREAD_POOL=openmp|own`` its runtime (read at the first native call).
"""

from __future__ import annotations

import os
from enum import Enum
from types import ModuleType
from typing import Any

from xnorlab.engine.errors import KernelConfigError

ABI_VERSION = 11


def _load() -> tuple[ModuleType | None, str]:
    if os.environ.get("XNORLAB_KERNEL", "").strip().lower() == "reference":
        return None, "forced by XNORLAB_KERNEL=reference"
    try:
        from xnorlab.engine import _native
    except ImportError as exc:  # pragma: no cover - depends on the build
        return None, f"native module not importable ({exc})"
    if getattr(_native, "ABI_VERSION", None) != ABI_VERSION:  # pragma: no cover
        return None, f"native module ABI {_native.ABI_VERSION} != {ABI_VERSION} (rebuild)"
    return _native, "native"


_NATIVE, _REASON = _load()


_ISA_CHECKED = False


class ThreadPool(Enum):
    """Where the engine's parallel work runs.

    ``OPENMP``: on torch's own OpenMP team (one team per process; its workers, still spinning
    after a float layer, take the engine's next call at once). ``OWN``: on the engine's own
    persistent pool, whose caller never waits for a late worker (a forked child always uses
    it: an OpenMP team does not survive ``fork``).
    """

    OPENMP = "openmp"
    OWN = "own"


def native_module() -> ModuleType | None:
    """The native module, or None when the reference is in use (see :func:`reason`).

    The first call validates the ISA choice (``XNORLAB_ISA``) and raises ``KernelConfigError``
    if it cannot be honoured.
    """
    global _ISA_CHECKED
    if _NATIVE is not None and not _ISA_CHECKED:
        _ensure_isa()
        _apply_pool_env()
        _ISA_CHECKED = True
    return _NATIVE


def reason() -> str:
    """Why the native engine is or is not in use."""
    return _REASON


def _ensure_isa() -> str:
    assert _NATIVE is not None
    try:
        return str(_NATIVE.active_isa())
    except (ValueError, RuntimeError) as exc:
        raise KernelConfigError(f"cannot choose the kernel ISA: {exc}") from exc


def _apply_pool_env() -> None:
    name = os.environ.get("XNORLAB_THREAD_POOL", "").strip().lower()
    if name:
        set_thread_pool(_pool_of(name, "XNORLAB_THREAD_POOL"))


def _pool_of(value: object, what: str) -> ThreadPool:
    try:
        return ThreadPool(value)  # a member or its value
    except ValueError:
        names = ", ".join(p.value for p in ThreadPool)
        raise KernelConfigError(f"{what} must be one of {names}, got {value!r}") from None


def info() -> dict[str, Any]:
    """Engine state: ``isa``, ``compiled_isas``, ``supported_isas``, ``threads``,
    ``thread_pool`` (a :class:`ThreadPool` value), ``compiler``, ``build_type``,
    ``abi_version``, ``backend`` ("native" or "reference") and ``reason``."""
    if _NATIVE is None:
        return {
            "isa": "reference", "compiled_isas": [], "supported_isas": [], "threads": 1,
            "thread_pool": None, "compiler": "", "build_type": "", "abi_version": ABI_VERSION,
            "backend": "reference", "reason": _REASON,
        }  # fmt: skip
    native_module()  # the environment's ISA and pool choices are checked and applied first
    return {
        "isa": _ensure_isa(),
        "compiled_isas": list(_NATIVE.compiled_isas()),
        "supported_isas": list(_NATIVE.supported_isas()),
        "threads": int(_NATIVE.get_threads()),
        "thread_pool": str(_NATIVE.get_thread_pool()),
        "compiler": str(_NATIVE.COMPILER),
        "build_type": str(_NATIVE.BUILD_TYPE),
        "abi_version": int(_NATIVE.ABI_VERSION),
        "backend": "native",
        "reason": _REASON,
    }


def _require_native(what: str) -> ModuleType:
    if _NATIVE is None:
        raise KernelConfigError(f"{what} needs the native engine, which is not in use ({_REASON})")
    return _NATIVE


def set_isa(name: str) -> None:
    """Switch the native engine to ISA ``name`` (``scalar``, ``avx2``, ``avx512``)."""
    native = _require_native("set_isa")
    supported = list(native.supported_isas())
    if name not in supported:
        raise KernelConfigError(
            f"ISA {name!r} is not available here (supported: {', '.join(supported)})"
        )
    native.set_active_isa(name)


def get_threads() -> int:
    """Threads of the native pool (1 for the reference)."""
    return int(_NATIVE.get_threads()) if _NATIVE is not None else 1


def set_threads(threads: int) -> None:
    """Resize the native thread pool to ``threads`` (1..256)."""
    native = _require_native("set_threads")
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 256:
        raise KernelConfigError(f"threads must be an int in 1..256, got {threads!r}")
    native.set_threads(threads)


def get_thread_pool() -> ThreadPool | None:
    """The runtime of the native pool (None for the reference)."""
    native = native_module()
    return ThreadPool(native.get_thread_pool()) if native is not None else None


def set_thread_pool(pool: ThreadPool | str) -> None:
    """Run the engine's parallel work on torch's OpenMP team or on its own pool
    (:class:`ThreadPool`, or its value ``"openmp"``/``"own"``); waits for a running call."""
    choice = _pool_of(pool, "thread pool")
    try:
        _require_native("set_thread_pool").set_thread_pool(choice.value)
    except ValueError as exc:  # OpenMP asked for in a forked child
        raise KernelConfigError(str(exc)) from None


def microkernel_rate(in_channels: int, out_channels: int, kernel: int = 3,
                     seconds: float = 0.2) -> float:  # fmt: skip
    """Binary MACs per second of the active ISA's conv micro-kernel alone, one thread.

    The "bare popcount loop": ``xor + popcount + add`` over ``kernel * kernel`` taps of
    ``ceil(in_channels / 64)`` words for one tile of pixels and the output-channel blocks the
    driver groups, with its fused output transform, on L1-resident data (no packing, padding,
    allocation or threads). Compare with the register-only ceiling of the ISA
    (``benchmarks/ceilings.c``); one binary MAC = one bit of ``xor`` + ``popcount``.
    """
    native = _require_native("microkernel_rate")
    sizes = {"in_channels": in_channels, "out_channels": out_channels, "kernel": kernel}
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1 << 20:
            raise KernelConfigError(f"{name} must be an int in 1..2**20, got {value!r}")
    if kernel > 15:
        raise KernelConfigError(f"kernel must be <= 15, got {kernel}")
    if not isinstance(seconds, (int, float)) or not 0.0 < float(seconds) <= 10.0:
        raise KernelConfigError(f"seconds must be in (0, 10], got {seconds!r}")
    return float(native.microkernel_rate(kernel, in_channels, out_channels, float(seconds)))
