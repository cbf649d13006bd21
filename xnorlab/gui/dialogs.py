"""Small dialogs of the main window: the name-pattern question and the Getting started page,
and the confirm/Cancel row every choosing dialog ends with (``confirm_buttons``).

``PatternDialog`` asks a glob and a mode in one dialog (wide enough for its title).
``GettingStartedDialog`` shows ``xnorlab/resources/help/getting-started.html``, which ships
with the package: help works offline and never opens a browser.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from xnorlab.binary.modes import Mode

HELP_PAGE = Path(__file__).resolve().parent.parent / "resources" / "help" / "getting-started.html"
TITLE_MARGIN_PX = 160  # window decorations beside a title: icon and close / maximize buttons


def fit_title(dialog: QDialog) -> None:
    """Make ``dialog`` at least as wide as its title needs, so no window manager cuts it."""
    needed = dialog.fontMetrics().horizontalAdvance(dialog.windowTitle()) + TITLE_MARGIN_PX
    dialog.setMinimumWidth(max(dialog.minimumWidth(), needed))


def confirm_buttons(dialog: QDialog, confirm: QDialogButtonBox.StandardButton) -> QDialogButtonBox:
    """``confirm`` (Ok, Open…) and Cancel, wired to ``dialog``'s accept and reject."""
    buttons = QDialogButtonBox(confirm | QDialogButtonBox.StandardButton.Cancel)
    buttons.accepted.connect(dialog.accept)
    buttons.rejected.connect(dialog.reject)
    return buttons


class PatternDialog(QDialog):
    """Layers > By name pattern…: a glob (``features.*``) and the mode to give the matches."""

    def __init__(self, layer_names: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Set mode by name pattern")
        self.pattern_edit = QLineEdit()
        self.pattern_edit.setPlaceholderText("a glob, e.g. features.* or layer?.0.conv*")
        self.mode_box = QComboBox()
        self.mode_box.addItems([m.value for m in (Mode.XNOR, Mode.BWN, Mode.FLOAT)])
        sample = ", ".join(layer_names[:4]) + (", …" if len(layer_names) > 4 else "")
        hint = QLabel(f"Layers: {sample}" if layer_names else "No model is open.")
        hint.setWordWrap(True)
        buttons = confirm_buttons(self, QDialogButtonBox.StandardButton.Ok)
        form = QFormLayout(self)
        form.addRow("Pattern", self.pattern_edit)
        form.addRow("Mode", self.mode_box)
        form.addRow(hint)
        form.addRow(buttons)
        fit_title(self)

    def choice(self) -> tuple[str, str] | None:
        """Run the dialog; ``(pattern, mode)``, or ``None`` when cancelled or left empty."""
        if self.exec() != QDialog.DialogCode.Accepted:
            return None
        pattern = self.pattern_edit.text().strip()
        return (pattern, self.mode_box.currentText()) if pattern else None


class GettingStartedDialog(QDialog):
    """Help > Getting started: the bundled page, offline."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Getting started with xnorlab")
        self.browser = QTextBrowser()
        self.browser.setOpenExternalLinks(False)
        self.browser.setHtml(HELP_PAGE.read_text(encoding="utf-8"))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser, 1)
        layout.addWidget(buttons)
        self.resize(720, 640)
        fit_title(self)
