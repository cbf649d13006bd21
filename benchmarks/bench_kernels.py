#!/usr/bin/env python
"""Benchmark of the native XNOR engine against torch float32 and int8 (same as `xnorlab bench`).

Usage (from the repo root, with the venv):
    .venv/bin/python benchmarks/bench_kernels.py [--threads N ...] [--batch B ...] [--isa ...]
                                                 [--scaling kmap|scalar|none] [--json] [--quick]
The command re-executes itself once with MALLOC_MMAP_THRESHOLD_=33554432 and
MALLOC_TRIM_THRESHOLD_=4294967296 (applied to torch and the engine alike) unless --no-reexec.
On a shared machine run it through benchmarks/run_favoured.sh (own session, nice -19).
Results and how to read them: benchmarks/RESULTS.md (JSON of that run: results_latest.json).
"""

from __future__ import annotations

import sys

from xnorlab.cli.bench import main

if __name__ == "__main__":
    sys.exit(main())
