"""Guard against a PySide6 6.12 refcount bug on Python < 3.12.

With PySide6/shiboken6 6.12.0 on CPython 3.11, every Python-side ``SignalInstance.emit(...)``
returns ``True`` without taking a reference, so each emit steals one reference of the ``True``
singleton (measured: 10 emits -> ``sys.getrefcount(True)`` drops by 10). A process starts with
about 2,700 references to ``True``; after that many emits (pyqtgraph emits on every redraw, the
workers on every progress step) CPython aborts with "Fatal Python error: bool_dealloc".

CPython 3.12 made ``True``/``False``/``None`` immortal, which hides the bug. On older versions
we give the three singletons a huge reference count once, so a stolen reference can never
free them. This touches only those three objects' counters and is a no-op on 3.12+.
"""

from __future__ import annotations

import ctypes
import sys

_HEADROOM = 1 << 40  # references: far more emits than any process can make


def immortalize_singletons() -> None:
    """Raise the reference count of ``True``, ``False`` and ``None`` by ``_HEADROOM`` (< 3.12)."""
    if sys.version_info >= (3, 12) or getattr(sys, "_xnorlab_singletons_guarded", False):
        return
    for singleton in (True, False, None):
        ctypes.c_ssize_t.from_address(id(singleton)).value += _HEADROOM
    sys._xnorlab_singletons_guarded = True  # type: ignore[attr-defined]


immortalize_singletons()
