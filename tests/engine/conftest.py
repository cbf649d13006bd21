"""Fixtures of the kernel tests: run a test once per ISA this CPU supports, restore after.

AddressSanitizer run (outside the normal suite, see native/README.md): ``native/tools/asan_tests.sh``
builds the module with -fsanitize=address into build/asan and runs this directory against it
with libasan and libstdc++ preloaded (``ASAN_OPTIONS=detect_leaks=0``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from xnorlab import engine

SUPPORTED_ISAS = engine.info()["supported_isas"]


@pytest.fixture(params=SUPPORTED_ISAS or ["reference"])
def isa(request: pytest.FixtureRequest) -> Iterator[str]:
    """Switch the engine to each supported ISA in turn."""
    if request.param == "reference":
        yield "reference"
        return
    before = engine.info()["isa"]
    engine.set_isa(request.param)
    try:
        yield request.param
    finally:
        engine.set_isa(before)
