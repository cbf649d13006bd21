"""Shared test set-up: headless Qt, deterministic torch, small thread counts, and the ``isa``
fixture that runs an engine test once per ISA this CPU supports.

AddressSanitizer run (outside the normal suite, see native/README.md): ``native/tools/asan_tests.sh``
builds the module with -fsanitize=address into build/asan and runs tests/engine against it
with libasan and libstdc++ preloaded (``ASAN_OPTIONS=detect_leaks=0``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
import torch

from xnorlab import engine

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(params=engine.info()["supported_isas"] or ["reference"])
def isa(request: pytest.FixtureRequest) -> Iterator[str]:
    """Switch the engine to each supported ISA in turn; restore the one before."""
    if request.param == "reference":
        yield "reference"
        return
    before = engine.info()["isa"]
    engine.set_isa(request.param)
    try:
        yield request.param
    finally:
        engine.set_isa(before)


THREAD_SETTINGS = [(1, "openmp"), (2, "openmp"), (2, "own")]


@pytest.fixture(params=THREAD_SETTINGS, ids=["1", "2-openmp", "2-own"])
def threads(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the engine on 1 thread, then 2 on torch's OpenMP team, then 2 on the engine's own
    pool (the reference has neither); restore the count and pool before."""
    count, pool = request.param
    if engine.info()["backend"] != "native":
        yield count
        return
    before = engine.get_threads(), engine.get_thread_pool()
    engine.set_threads(count)
    engine.set_thread_pool(pool)
    try:
        yield count
    finally:
        engine.set_threads(before[0])
        engine.set_thread_pool(before[1])  # type: ignore[arg-type]
