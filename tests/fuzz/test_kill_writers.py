"""A writer killed (SIGKILL) while it writes leaves no half-written file at its target, and the
next successful run removes the dead writer's temp.

The killed run is a real ``xnorlab train`` / ``xnorlab report`` process in which the one write
of the output (``torch.save`` for the checkpoint, ``Path.write_bytes`` for the report) writes
half of its bytes to the temp file and then waits: the test kills it exactly mid-write.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fuzz_support import deadline, run_cli

from xnorlab.models.checkpoint import read_checkpoint

HOLD_MARK = "fuzz: half written, waiting to be killed"
# Runs the CLI with the output write cut in half and held (see the module docstring).
DRIVER = f"""
import io, pathlib, sys, time
import torch

def hold():
    sys.stderr.write({HOLD_MARK!r} + "\\n")
    sys.stderr.flush()
    time.sleep(600)

def write_half(path, data):
    with open(path, "wb") as handle:
        handle.write(data[: len(data) // 2])
        handle.flush()
    hold()

real_save = torch.save
def half_save(obj, path, *args, **kwargs):
    if not str(path).endswith(".tmp"):  # not the output: e.g. a size measured in memory
        return real_save(obj, path, *args, **kwargs)
    buffer = io.BytesIO()
    real_save(obj, buffer, *args, **kwargs)
    write_half(path, buffer.getvalue())

torch.save = half_save
real_write_bytes = pathlib.Path.write_bytes
def half_write_bytes(self, data):
    if self.name.endswith(".tmp"):
        write_half(self, data)
    return real_write_bytes(self, data)

pathlib.Path.write_bytes = half_write_bytes
from xnorlab.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def _killed_mid_write(argv: list[str]) -> int:
    """Start the CLI with ``DRIVER``, SIGKILL it once it has written half its output; its PID."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    with subprocess.Popen(
        [sys.executable, "-c", DRIVER, *argv],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    ) as proc:  # fmt: skip
        assert proc.stderr is not None
        seen = []
        with deadline(240):
            for line in proc.stderr:
                seen.append(line)
                if HOLD_MARK in line:
                    break
        assert proc.poll() is None, f"ended before writing: {''.join(seen)[-800:]}"
        proc.kill()
        proc.wait(timeout=30)
        return proc.pid


def _temps(target: Path, pid: int | None = None) -> list[Path]:
    pattern = f".{target.name}.{pid}.*.tmp" if pid is not None else f".{target.name}.*.tmp"
    return sorted(target.parent.glob(pattern))


def _check_kill_and_recovery(argv: list[str], target: Path, capsys: Any) -> None:
    first = run_cli(argv, capsys)
    assert first.code == 0, first.describe()
    before = target.read_bytes()
    pid = _killed_mid_write(argv)
    left = _temps(target, pid)
    assert len(left) == 1 and 0 < left[0].stat().st_size < len(before) * 0.9, left
    assert target.read_bytes() == before  # the old file, whole: never the half
    again = run_cli(argv, capsys)
    assert again.code == 0, again.describe()
    assert _temps(target) == [], "the dead writer's temp is still there"
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


@pytest.mark.slow
def test_train_killed_mid_save(tmp_path: Path, capsys: Any) -> None:
    target = tmp_path / "lenet.pt"
    argv = ["train", "lenet", "--data", "digits", "--epochs", "1", "--max-items", "64",
            "--batch-size", "32", "--out", str(target)]  # fmt: skip
    _check_kill_and_recovery(argv, target, capsys)
    assert read_checkpoint(target).state_dict is not None


@pytest.mark.slow
def test_report_killed_mid_write(tmp_path: Path, capsys: Any) -> None:
    target = tmp_path / "lenet.json"
    argv = ["report", "demo:lenet-xnor", "--out", str(target), "--data", "random",
            "--no-sensitivity", "--no-latency", "--quiet"]  # fmt: skip
    _check_kill_and_recovery(argv, target, capsys)
    assert target.read_text().strip().endswith("}")
