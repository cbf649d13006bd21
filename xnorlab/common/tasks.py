"""Conventions of long-running core functions (no threads here: the GUI's workers run them).

A long function takes two optional keyword callables:

* ``progress(fraction, message="", payload=None)``: ``fraction`` in [0, 1]; ``payload`` is
  free (the training loop passes its metrics, evaluation its running counts);
* ``should_cancel() -> bool``: polled between steps; when it returns True the function stops
  early by raising ``Cancelled`` (or returns a documented partial result).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol

from xnorlab.common.errors import XnorlabError

CancelFn = Callable[[], bool]


class ProgressFn(Protocol):
    """The one progress callback: ``progress(fraction, message, payload)``."""

    def __call__(self, fraction: float, message: str = "", payload: Any = None, /) -> None: ...


class Cancelled(XnorlabError):
    """The user cancelled a long-running task."""


def no_progress(fraction: float, message: str = "", payload: Any = None, /) -> None:
    """A ``progress`` callable that ignores everything."""


def never_cancel() -> bool:
    """A ``should_cancel`` callable that never asks to stop."""
    return False


def check_cancel(should_cancel: CancelFn | None, what: str = "task") -> None:
    """Raise ``Cancelled`` if ``should_cancel()`` says so."""
    if should_cancel is not None and should_cancel():
        raise Cancelled(f"{what} cancelled")


class SigintCancel:
    """Turn Ctrl-C into a cancel request (a ``CancelFn``), so a run stops at its next check
    and ends cleanly instead of dying mid-write; ``restore()`` puts the previous handler back.
    Only the main thread can install a handler; elsewhere it never requests a cancel."""

    def __init__(self) -> None:
        self.requested = False
        self.previous = signal.getsignal(signal.SIGINT)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True

    def __call__(self) -> bool:
        return self.requested

    def restore(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self.previous)
