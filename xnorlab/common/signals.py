"""A tiny Qt-free signal: ``connect`` / ``disconnect`` / ``emit`` (psygnal-like, no dependency).

The core notifies views through these; the GUI connects Qt widgets to them. Slots run
synchronously in the emitting thread, in connection order. If a slot raises, the remaining
slots still run and the first exception is re-raised afterwards, so one broken view cannot
starve the others of an update and no error is swallowed silently.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

Slot = Callable[..., Any]


class Signal:
    """A list of callables called with the emitted arguments."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._slots: list[Slot] = []
        self._lock = threading.Lock()
        self._blocked = False

    def connect(self, slot: Slot) -> Slot:
        """Call ``slot(*args)`` on every ``emit``; returns ``slot`` (usable as a decorator)."""
        if not callable(slot):
            raise TypeError(f"signal {self.name!r}: slot {slot!r} is not callable")
        with self._lock:
            if slot not in self._slots:
                self._slots.append(slot)
        return slot

    def disconnect(self, slot: Slot | None = None) -> None:
        """Remove ``slot`` (all slots when ``None``); unknown slots are ignored."""
        with self._lock:
            if slot is None:
                self._slots.clear()
            elif slot in self._slots:
                self._slots.remove(slot)

    def emit(self, *args: Any) -> None:
        """Call every connected slot with ``args``; re-raise the first slot error at the end."""
        if self._blocked:
            return
        with self._lock:
            slots = list(self._slots)
        first_error: BaseException | None = None
        for slot in slots:
            try:
                slot(*args)
            except Exception as exc:  # re-raised below, after all slots ran
                if first_error is None:
                    first_error = exc
        if first_error is not None:
            raise first_error

    @property
    def n_slots(self) -> int:
        """Number of connected slots."""
        return len(self._slots)

    def blocked(self) -> _Blocker:
        """Context manager that mutes the signal (emits are dropped) until it exits."""
        return _Blocker(self)


class _Blocker:
    def __init__(self, signal: Signal) -> None:
        self.signal = signal
        self.previous = False

    def __enter__(self) -> Signal:
        self.previous = self.signal._blocked
        self.signal._blocked = True
        return self.signal

    def __exit__(self, *exc: object) -> None:
        self.signal._blocked = self.previous
