"""Errors the kernel facade raises for input a user can get wrong (shown as one clear line)."""

from __future__ import annotations

from xnorlab.common.errors import XnorlabError


class KernelInputError(XnorlabError, ValueError):
    """Bad value, shape, size, device or geometry given to an ``xnorlab.engine`` function."""


class KernelTypeError(XnorlabError, TypeError):
    """Wrong type or dtype given to an ``xnorlab.engine`` function."""


class KernelConfigError(XnorlabError, RuntimeError):
    """Unusable engine setting (unknown or unsupported ISA, bad thread count, missing module)."""
