"""Application entry: create the QApplication and the main window."""

from __future__ import annotations

import sys


def run_app(model_spec: str | None = None, screenshot: str | None = None) -> int:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QMainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = QMainWindow()
    window.setWindowTitle("xnorlab")
    window.resize(1280, 800)
    window.statusBar().showMessage(f"model: {model_spec or 'demo'}")
    window.show()
    if screenshot:
        def grab() -> None:
            window.grab().save(screenshot)
            app.quit()

        QTimer.singleShot(200, grab)
    return int(app.exec())
