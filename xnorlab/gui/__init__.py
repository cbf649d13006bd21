"""PySide6 + pyqtgraph desktop app. Only this package imports Qt."""
