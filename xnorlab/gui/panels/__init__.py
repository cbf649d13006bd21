"""Dockable panels of the main window: metrics, prediction, training, open dialogs.

Each panel is a QWidget built as ``Panel(session, parent=None)``; it renders data computed by
the Qt-free core (``xnorlab.core``) in workers (``xnorlab.gui.workers``) and writes back only
through the session's API.
"""
