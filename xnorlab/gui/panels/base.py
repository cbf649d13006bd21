"""Shared plumbing of the panels: session subscriptions that end with the widget, status lines,
and the one background job a panel runs at a time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtWidgets import QLabel, QPushButton, QWidget

from xnorlab.common.signals import Signal
from xnorlab.gui.style import Tone, set_tone
from xnorlab.gui.workers import Task, TaskRunner


def _disconnect_all(connections: list[tuple[Signal, Callable[..., Any]]]) -> None:
    for signal, slot in connections:
        signal.disconnect(slot)
    connections.clear()


def subscribe(widget: QWidget, pairs: list[tuple[Signal, Callable[..., Any]]]) -> None:
    """Connect session ``Signal`` -> slot pairs and disconnect them when ``widget`` is destroyed.

    Session signals are plain Python callables lists: without this, a deleted panel would still
    be called (and raise "C++ object already deleted").
    """
    connections: list[tuple[Signal, Callable[..., Any]]] = []
    for signal, slot in pairs:
        signal.connect(slot)
        connections.append((signal, slot))
    widget.destroyed.connect(lambda *_: _disconnect_all(connections))


def show_message(label: QLabel, text: str, error: bool = False) -> None:
    """Show ``text`` in a status label, in the theme's error colour for errors."""
    set_tone(label, Tone.ERROR if error else Tone.NORMAL)
    label.setText(text)


class TaskPanel(QWidget):
    """A panel that runs one background job at a time (``task``) in its own ``runner`` and
    says what happens in its ``message`` label (which the subclass builds)."""

    message: QLabel

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runner = TaskRunner(self)
        self.task: Task | None = None

    def _make_cancel_button(self) -> QPushButton:
        """A Cancel button for the job: disabled until a job runs."""
        button = QPushButton("Cancel")
        button.setEnabled(False)
        button.clicked.connect(self.cancel)
        return button

    def cancel(self) -> None:
        """Ask the running job to stop; its result is dropped (a finished job is left alone,
        so nothing claims to be cancelling)."""
        if self.task is not None and not self.task.done:
            self.task.cancel()
            show_message(self.message, "cancelling…")

    def busy(self) -> bool:
        """True while the job runs."""
        return self.runner.active > 0

    def shutdown(self) -> None:
        """Cancel and wait for the worker (window close)."""
        self.runner.shutdown()
