"""xnorlab: a desktop lab for binary neural networks (XNOR-Net, BWN)."""

from __future__ import annotations

import os

__version__ = "0.1.0"

# torch's OpenMP workers spin after every parallel region by default and then starve the native
# engine's thread pool on the other core: measured on 2 cores, the 2-thread XNOR conv gained
# 1.0-1.6x over 1 thread with spinning and 1.6-2.3x with PASSIVE, while torch's own float conv
# kept its 1.84-1.91x (benchmarks/RESULTS.md). libgomp reads this once, when torch loads, so it
# only takes effect when xnorlab is imported before torch (as in the CLI and the app). A value
# the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
