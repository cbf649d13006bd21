"""xnorlab: a desktop lab for binary neural networks (XNOR-Net, BWN)."""

from __future__ import annotations

import os

__version__ = "0.1.0"

# torch's OpenMP workers spin for a long time after every parallel region by default (libgomp:
# 300,000 spins) and then starve the native engine's thread pool on the other core: measured on
# 2 cores, an XNOR conv right after a torch conv scaled 1.04-1.08x from 1 to 2 threads. Sleeping
# at once (OMP_WAIT_POLICY=PASSIVE, the default here until session 3) cures that but makes every
# small torch op of a model wake its workers: resnet18 at batch 1 on 2 threads took 28.4-28.8 ms
# in float and 7.6-7.7 ms binarized through the engine. A short spin (GOMP_SPINCOUNT=10000) keeps
# both: 23.6-23.9 ms float, 5.6-5.7 ms binarized, and the XNOR conv after a torch conv scales
# 1.86-2.01x (benchmarks/RESULTS.md). libgomp reads these once, when torch loads, so they only
# take effect when xnorlab is imported before torch (as in the CLI and the app). A policy or spin
# count the user set wins.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "10000"
