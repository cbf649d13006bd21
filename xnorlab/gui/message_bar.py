"""An inline, dismissible error line at the top of the window (instead of modal dialogs)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QWidget

from xnorlab.gui import style


class MessageBar(QFrame):
    """Shows the last user-facing error; hidden until there is one."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("message-bar")
        self.label = QLabel(self)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton(self)
        close.setText("\u2715")
        close.setToolTip("Dismiss")
        close.setAutoRaise(True)
        close.clicked.connect(self.clear)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(close)
        self.restyle()
        self.hide()

    def show_message(self, text: str) -> None:
        """Show ``text`` (one line for the user)."""
        self.label.setText(text)
        self.show()

    def text(self) -> str:
        """The shown message ("" when hidden)."""
        return self.label.text() if self.isVisible() else ""

    def clear(self) -> None:
        self.label.clear()
        self.hide()

    def restyle(self) -> None:
        """Follow the current theme's error colours."""
        t = style.theme()
        self.setStyleSheet(
            f"#message-bar {{ background: {t.error_bg}; border-radius: 4px; }}"
            f"#message-bar QLabel {{ color: {t.error_text}; }}"
        )
