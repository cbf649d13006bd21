"""Fixtures of the runtime tests: run a test once per ISA this CPU supports, restore after."""

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
