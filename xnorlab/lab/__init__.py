"""The lab session: the Qt-free model the app subscribes to (loaded model, data, modes, undo,
layer views). The GUI shows it; nothing here imports Qt."""
