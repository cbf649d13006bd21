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


@pytest.fixture
def restore_engine_threads() -> Iterator[None]:
    """Put the engine's thread count and pool back as they were after the test."""
    if engine.info()["backend"] != "native":
        yield
        return
    threads, pool = engine.get_threads(), engine.get_thread_pool()
    try:
        yield
    finally:
        engine.set_threads(threads)
        engine.set_thread_pool(pool)  # type: ignore[arg-type]


THREAD_SETTINGS = [(1, "openmp"), (2, "openmp"), (2, "own")]


@pytest.fixture(params=THREAD_SETTINGS, ids=["1", "2-openmp", "2-own"])
def threads(request: pytest.FixtureRequest, restore_engine_threads: None) -> int:
    """Run the engine on 1 thread, then 2 on torch's OpenMP team, then 2 on the engine's own
    pool (the reference has neither); both are put back after the test."""
    count, pool = request.param
    if engine.info()["backend"] == "native":
        engine.set_threads(count)
        engine.set_thread_pool(pool)
    return int(count)
