"""``xnorlab train --nproc 2``: the run of one process, on two; every ending is one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
import torch

from xnorlab.cli.main import main
from xnorlab.models.spec import load_model_spec

pytestmark = pytest.mark.slow

RECIPE = ["train", "lenet", "--data", "digits", "--max-items", "256", "--batch-size", "32"]
# Binarized weights (BWN) but float activations: XNOR's binarized activations turn a rounding
# difference into a flipped sign by the second step, so an XNOR run differs from itself as much
# when only its thread count changes; BWN keeps the comparison about the run, not about chaos.
SAME_RUN = [*RECIPE, "--modes", "paper-bwn", "--epochs", "2", "--seed", "0"]
# Weights and statistics of the two runs agree within this: the order of the sums over ranks
# (gradients, BatchNorm statistics) moves them by a small fraction of it, a BatchNorm with
# per-rank statistics by far more. Both runs use one thread per process, since the thread count
# alone changes the order of every sum and moves the result by as much as the tolerance.
WEIGHT_TOLERANCE = 1e-3
FIRST_EPOCH_S = 300  # startup of three interpreters and one epoch, on a loaded machine
END_S = 60  # from the signal to the supervisor's exit


@pytest.fixture
def one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """One thread here and in the workers (they read OMP_NUM_THREADS)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_two_processes_train_what_one_process_trains(tmp_path: Path, capfd, one_thread) -> None:
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    assert main([*SAME_RUN, "--out", str(one)]) == 0
    assert main([*SAME_RUN, "--out", str(two), "--nproc", "2"]) == 0
    out, err = capfd.readouterr()
    assert "done: kept epoch 2" in out and "on 2 processes" in out
    assert "error" not in err and "Traceback" not in err, err
    single, spread = load_model_spec(str(one)), load_model_spec(str(two))
    assert (single.card["processes"], spread.card["processes"]) == (1, 2)
    assert [m["train_loss"] for m in spread.card["history"]] == pytest.approx(
        [m["train_loss"] for m in single.card["history"]], rel=1e-3
    )
    a, b = single.model.state_dict(), spread.model.state_dict()
    gaps = {k: float((a[k] - b[k]).abs().max()) for k in a if a[k].is_floating_point()}
    assert max(gaps.values()) <= WEIGHT_TOLERANCE, gaps
    torch.manual_seed(0)  # the initial weights --seed 0 gives: training moved them far more
    start = load_model_spec("lenet").model.state_dict()
    assert float((a["conv2.weight"] - start["conv2.weight"]).abs().max()) > 10 * WEIGHT_TOLERANCE


class _Run:
    """``python -m xnorlab train ... --nproc 2`` in a subprocess, its stderr read as it comes."""

    def __init__(self, argv: list[str]) -> None:
        command = [sys.executable, "-m", "xnorlab", *argv, "--nproc", "2"]
        self.proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.err: list[str] = []
        self.out: list[str] = []
        # One reader per stream, and only these: a second reader of stderr (communicate) would
        # take lines this list never sees.
        self.readers = [
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream: IO[str] | None, lines: list[str]) -> None:
        assert stream is not None
        with stream:
            for line in stream:
                lines.append(line.rstrip("\n"))

    def wait_for(self, phrase: str) -> None:
        deadline = time.monotonic() + FIRST_EPOCH_S
        while not any(phrase in line for line in self.err):
            assert self.proc.poll() is None, self.err
            assert time.monotonic() < deadline, self.err
            time.sleep(0.2)

    def workers(self) -> list[int]:
        """The spawned workers (the resource tracker is a child too, but not one of them)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                command = (entry / "cmdline").read_bytes()
            except (OSError, IndexError, ValueError):
                continue
            if ppid == self.proc.pid and b"spawn_main" in command:
                found.append(int(entry.name))
        return sorted(found)

    def end(self) -> tuple[int, str, float]:
        """Wait for the exit, then for both streams to reach end of file."""
        start = time.monotonic()
        code = self.proc.wait(timeout=END_S)
        for reader in self.readers:
            reader.join(timeout=5)
        return code, "\n".join(self.out), time.monotonic() - start


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"  # ended; only its parent's bookkeeping is left


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the workers in /proc")
def test_a_lost_rank_ends_every_rank_with_one_line(tmp_path: Path) -> None:
    run = _Run([*RECIPE, "--modes", "paper", "--epochs", "1000", "--out", str(tmp_path / "k.pt")])
    run.wait_for("epoch 1/1000:")
    workers = run.workers()
    assert len(workers) == 2
    os.kill(workers[-1], signal.SIGKILL)  # as the kernel's out-of-memory killer would
    code, _, seconds = run.end()
    errors = [line for line in run.err if "error" in line]
    assert code == 1 and len(errors) == 1, run.err
    assert errors[0].startswith("xnorlab train: error: rank ")
    assert errors[0].endswith("was killed by SIGKILL; the other ranks were stopped")
    assert not any("Traceback" in line for line in run.err)
    assert seconds < END_S and all(_gone(pid) for pid in workers)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the workers in /proc")
def test_ctrl_c_cancels_every_rank_after_the_same_batch_with_a_checkpoint(tmp_path: Path) -> None:
    out_path = tmp_path / "c.pt"
    run = _Run([*RECIPE, "--epochs", "1000", "--out", str(out_path)])
    run.wait_for("epoch 1/1000:")
    workers = run.workers()
    run.proc.send_signal(signal.SIGINT)  # what a terminal sends to its foreground process
    code, out, _ = run.end()
    assert code == 0 and out.startswith("cancelled: kept epoch "), (out, run.err)
    assert not any("error" in line or "Traceback" in line for line in run.err), run.err
    card = load_model_spec(str(out_path)).card
    assert card["cancelled"] is True and card["processes"] == 2
    assert all(_gone(pid) for pid in workers)
