"""Errors the user can cause (bad files, names, shapes); the CLI and GUI show their message.

Anything raised as an ``XnorlabError`` is reported as one clear line, never a traceback.
"""

from __future__ import annotations


class XnorlabError(Exception):
    """Base class of user-facing errors: the message is meant to be shown as is."""
