"""A first-steps hint under the layer table of a fresh window.

Shown until the user changes a layer's mode for the first time or closes it (both are
remembered in the settings, so a returning user never sees it again). It names three things
to try and links to Help > Getting started. Colours come from the palette (it follows the
theme).
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QWidget

HINT_TEXT = (
    "<b>New here?</b> Set a layer's <b>Mode</b> to <i>xnor</i> in the table and watch the "
    "views below · press <b>Ctrl+P</b> for the paper's preset (first and last layer float) · "
    "drop an image on the window to compare predictions. "
    "<a href='help'>Getting started (F1)</a> explains every panel."
)


class HintBar(QFrame):
    """The hint line; ``open_help`` is called by its link."""

    def __init__(self, open_help: Callable[[], object], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("hint-bar")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.label = QLabel(HINT_TEXT, self)
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.RichText)
        self.label.linkActivated.connect(lambda _link: open_help())
        self.close_button = QToolButton(self)
        self.close_button.setText("\u2715")
        self.close_button.setToolTip("Hide this hint (Help > Getting started has it all)")
        self.close_button.setAutoRaise(True)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignTop)
