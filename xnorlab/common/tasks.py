"""Conventions of long-running core functions (no threads here: the GUI's workers run them).

A long function takes two optional keyword callables:

* ``progress(fraction, message="", *extra)``: ``fraction`` in [0, 1]; ``extra`` is free
  (e.g. the training loop passes a metrics dict);
* ``should_cancel() -> bool``: polled between steps; when it returns True the function stops
  early by raising ``Cancelled`` (or returns a documented partial result).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xnorlab.common.errors import XnorlabError

ProgressFn = Callable[..., Any]
CancelFn = Callable[[], bool]


class Cancelled(XnorlabError):
    """The user cancelled a long-running task."""


def no_progress(fraction: float, message: str = "", *extra: Any) -> None:
    """A ``progress`` callable that ignores everything."""


def never_cancel() -> bool:
    """A ``should_cancel`` callable that never asks to stop."""
    return False


def check_cancel(should_cancel: CancelFn | None, what: str = "task") -> None:
    """Raise ``Cancelled`` if ``should_cancel()`` says so."""
    if should_cancel is not None and should_cancel():
        raise Cancelled(f"{what} cancelled")
