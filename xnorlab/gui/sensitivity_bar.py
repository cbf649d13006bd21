"""The strip above the layer table that belongs to a sensitivity run.

Hidden until the user asks for sensitivity (Layers > Measure sensitivity). While a run goes it
shows what is measured, a progress bar and Cancel; afterwards what the columns were measured
on (data, items per class, seed), the whole configuration's cost, and Measure again / Hide.
"""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from xnorlab.gui.panels.base import show_message


class SensitivityBar(QWidget):
    """Status, progress and buttons of the layer table's sensitivity columns."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.progress = QProgressBar(maximum=1000, textVisible=False)
        self.progress.setMaximumHeight(10)
        self.progress.setMaximumWidth(160)
        self.cancel_button = QPushButton("Cancel")
        self.again_button = QPushButton("Measure again")
        self.hide_button = QPushButton("Hide")
        self.hide_button.setToolTip("hide the sensitivity columns")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.addWidget(self.label, 1)
        for widget in (self.progress, self.cancel_button, self.again_button, self.hide_button):
            layout.addWidget(widget)
        self.hide()

    def running(self, text: str) -> None:
        """A run started: ``text``, an empty progress bar and Cancel."""
        show_message(self.label, text)
        self.progress.setValue(0)
        self._buttons(running=True)
        self.show()

    def progressed(self, fraction: float) -> None:
        self.progress.setValue(int(1000 * fraction))

    def finished(self, text: str, error: bool = False) -> None:
        """The run ended (result, error or cancel): ``text``, Measure again and Hide."""
        show_message(self.label, text, error=error)
        self._buttons(running=False)
        self.show()

    def _buttons(self, running: bool) -> None:
        self.progress.setVisible(running)
        self.cancel_button.setVisible(running)
        self.again_button.setVisible(not running)
        self.hide_button.setVisible(not running)
