"""Shared plumbing of the panels: session subscriptions that end with the widget."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtWidgets import QLabel, QWidget

from xnorlab.common.signals import Signal
from xnorlab.gui.style import Tone, set_tone


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
