"""Rules every room shares: the user-facing error type, progress and cancel callbacks, a
Qt-free signal, atomic file writes. Imports nothing of xnorlab."""
