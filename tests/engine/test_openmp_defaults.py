"""xnorlab sets torch's OpenMP spin before torch loads, unless the user chose a policy."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_PROBE = (
    "import os, xnorlab; print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))"
)


def _env_after_import(**settings: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(settings)
    done = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                          text=True, timeout=60, check=True)  # fmt: skip
    return done.stdout.strip()


def test_a_short_openmp_spin_is_the_default() -> None:
    assert _env_after_import() == "10000 None"


@pytest.mark.parametrize(
    ("settings", "expected"),
    [({"OMP_WAIT_POLICY": "PASSIVE"}, "None PASSIVE"), ({"GOMP_SPINCOUNT": "500"}, "500 None")],
)
def test_the_users_openmp_choice_wins(settings: dict[str, str], expected: str) -> None:
    assert _env_after_import(**settings) == expected
