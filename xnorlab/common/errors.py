"""Errors the user can cause (bad files, names, shapes); the CLI and GUI show their message.

Anything raised as an ``XnorlabError`` is reported as one clear line, never a traceback.
"""

from __future__ import annotations


class XnorlabError(Exception):
    """Base class of user-facing errors: the message is meant to be shown as is."""


def quoted(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: user text echoed in a one-line error
    (a layer name, a key) must not flood the line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-2:]}"
