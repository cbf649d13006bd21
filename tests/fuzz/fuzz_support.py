"""Running one fuzz case through the real CLI in-process, and what every case must satisfy.

Every case: exit 2 (a user error) or 0 (the input was valid after all, then a well-formed
result); at most one stderr line, never a traceback; nothing appears in the folder the case
works in (no output file, no temp). Exit 1 is the CLI's "internal error, a bug" and fails the
case. A case that blocks (a FIFO read, an endless device) fails after ``DEADLINE_S``.
"""

from __future__ import annotations

import json
import math
import os
import signal
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from torch import Tensor

from xnorlab.cli.main import main

DEADLINE_S = 60

# Hypothesis settings of the fuzz cases: a fixed number of examples, chosen the same way on
# every run (derandomize), no example database written into the work tree, no time limit per
# example (the first CLI call of a session imports and loads data).
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass(frozen=True)
class XnorSample:
    """``demo:lenet-xnor`` exported by ``xnorlab export``: path, bytes, metadata, tensors."""

    path: Path
    raw: bytes
    meta: dict[str, Any]
    tensors: dict[str, Tensor]

    @property
    def header_bytes(self) -> int:
        return int.from_bytes(self.raw[:8], "little")


@dataclass(frozen=True)
class Samples:
    xnor: XnorSample
    checkpoint: bytes  # the shipped demo:lenet-xnor checkpoint (.pt)
    png: bytes  # a handwritten-looking digit
    jpeg: bytes  # the same digit as JPEG
    photo: bytes  # a small colour JPEG


def fuzz(examples: int) -> settings:
    """``FUZZ`` with ``examples`` examples."""
    return settings(FUZZ, max_examples=examples)


class Hang(BaseException):
    """A case ran past ``DEADLINE_S`` (a BaseException, so the CLI cannot swallow it)."""


@contextmanager
def deadline(seconds: float = DEADLINE_S) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Outcome:
    argv: list[str]
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]

    def describe(self) -> str:
        return f"argv={self.argv!r} exit={self.code} stderr={self.err[-600:]!r}"


def listing(folder: Path) -> list[str]:
    """Every path under ``folder`` (hidden temps included), relative, sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def run_cli(argv: Sequence[str | Path], capsys: pytest.CaptureFixture[str]) -> Outcome:
    """``xnorlab.cli.main.main(argv)`` in-process with its stdout/stderr captured."""
    capsys.readouterr()  # drop what earlier examples of a hypothesis test printed
    with deadline():
        code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return Outcome([str(a) for a in argv], code, captured.out, captured.err)


def check_ending(outcome: Outcome, *, valid: bool | None = None) -> None:
    """Exit 2 with one ``xnorlab CMD: error:`` line, or exit 0 without a traceback.

    ``valid``: True requires 0, False requires 2, None accepts either.
    """
    command = outcome.argv[0]
    assert "Traceback" not in outcome.err, outcome.describe()
    allowed = {True: (0,), False: (2,), None: (0, 2)}[valid]
    assert outcome.code in allowed, outcome.describe()
    if outcome.code == 2:
        lines = outcome.err_lines
        assert len(lines) == 1, outcome.describe()
        assert lines[0].startswith(f"xnorlab {command}: error: "), outcome.describe()


def run_case(
    argv: Sequence[str | Path],
    capsys: pytest.CaptureFixture[str],
    folder: Path,
    *,
    valid: bool | None = None,
    keep: tuple[str, ...] = (),
) -> Outcome:
    """``run_cli`` + ``check_ending`` + nothing new in ``folder`` (names in ``keep`` may be
    written: the outputs of a case that is valid)."""
    before = listing(folder)
    outcome = run_cli(argv, capsys)
    check_ending(outcome, valid=valid)
    after = [p for p in listing(folder) if not (outcome.code == 0 and p in keep)]
    assert after == before, f"{outcome.describe()} left {sorted(set(after) - set(before))}"
    return outcome


def _probability(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value) and 0.0 <= value <= 1.0


def check_predictions(outcome: Outcome, images: int, topk: int) -> None:
    """A successful ``predict --json``: per image, ``topk`` classes, finite descending
    probabilities in [0, 1]."""
    payload = json.loads(outcome.out)
    predictions = payload["predictions"]
    assert len(predictions) == images, outcome.describe()
    for item in predictions:
        top = item["top"]
        assert 1 <= len(top) <= topk, outcome.describe()
        probabilities = [t["probability"] for t in top]
        assert all(_probability(p) for p in probabilities), outcome.out[:800]
        assert probabilities == sorted(probabilities, reverse=True)
        assert all(isinstance(t["class"], str) for t in top)


def check_evaluation(outcome: Outcome, items: int) -> None:
    """A successful ``eval --json``: accuracies in [0, 1], a finite loss, ``items`` counted."""
    payload = json.loads(outcome.out)
    assert payload["count"] == items, outcome.describe()
    assert _probability(float(payload["top1"])) and _probability(float(payload["top5"]))
    assert math.isfinite(payload["loss"])


def make_fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path
