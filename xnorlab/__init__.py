"""xnorlab: a desktop lab for binary neural networks (XNOR-Net, BWN)."""

from __future__ import annotations

__version__ = "0.1.0"
