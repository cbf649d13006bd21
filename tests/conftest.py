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


@pytest.fixture(params=[1, 2])
def threads(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the engine on 1, then 2 threads; restore the count before."""
    before = engine.get_threads()
    engine.set_threads(request.param)
    try:
        yield request.param
    finally:
        engine.set_threads(before)
