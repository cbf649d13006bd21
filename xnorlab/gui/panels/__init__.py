"""Dockable panels of the main window: metrics, prediction, training, open dialogs.

Each panel is a QWidget built as ``Panel(session, parent=None)``; it renders data computed by
the Qt-free core (``xnorlab``) in workers (``xnorlab.gui.workers``) and writes back only
through the session's API.
"""

from xnorlab.gui import _refcount_guard  # noqa: F401 - see the module: PySide6 6.12 bug
