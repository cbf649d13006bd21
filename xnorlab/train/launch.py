"""Run one function on N local processes as one distributed run (``xnorlab train --nproc N``).

The supervisor (the calling process) does what torchrun does on one machine, and no more:

* it picks a free localhost port and starts N spawned workers whose environment names their
  place (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), so a
  worker runs the same code as under torchrun; each gets an equal share of the CPU threads
  unless ``OMP_NUM_THREADS`` says otherwise;
* the workers live in their own process group, so a terminal's Ctrl-C reaches only the
  supervisor, which forwards one SIGINT to each (they cancel together, after a batch); a
  second Ctrl-C, or SIGTERM, stops them at once; on Linux they die with the supervisor;
* a failing worker hands its one line to the supervisor (``report_failure``) before it leaves
  the process group; the other workers then fail too (they lost a peer), later. When a worker
  fails, the others get ``grace_s`` to end on their own, then SIGTERM, then SIGKILL;
* the run ends with one line on stderr: an unreported death (a signal, say) if there was one,
  else the earliest report, which is the cause, not the echoes.
"""

from __future__ import annotations

import ctypes
import math
import multiprocessing as mp
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

import torch

EXIT_INTERNAL_ERROR = 1
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM
KILL_AFTER_S = 3.0  # after SIGTERM, a worker that has not ended gets SIGKILL
_PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>

WorkerFn = Callable[[Any], int]


@dataclass(frozen=True)
class Failure:
    """What a worker reports when it fails: exit status, one line, when it was caught."""

    rank: int
    code: int
    line: str
    at: float  # time.time()


_report_to: Connection | None = None  # set in a worker that a supervisor started


def report_failure(rank: int, code: int, line: str) -> int:
    """Hand a worker's failure to its supervisor, or print the line when there is none
    (under torchrun every rank speaks for itself); returns ``code``."""
    if _report_to is not None:
        _report_to.send(Failure(rank, code, line, time.time()))
    else:
        print(line, file=sys.stderr)
    return code


def free_port() -> int:
    """A TCP port that is free on localhost now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with(parent_pid: int) -> None:
    """Leave the terminal's process group and end with the supervisor (Linux)."""
    os.setpgid(0, 0)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent_pid:  # the supervisor ended before prctl took effect
        os._exit(EXIT_TERMINATED)


def _worker_main(
    target: WorkerFn,
    payload: Any,
    label: str,
    rank: int,
    nproc: int,
    port: int,
    parent_pid: int,
    report_to: Connection,
) -> None:
    global _report_to
    _report_to = report_to
    _die_with(parent_pid)
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(nproc),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(nproc),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // nproc))
    try:
        code = target(payload)
    except KeyboardInterrupt:
        code = report_failure(rank, EXIT_INTERRUPTED, f"{label}: interrupted")
    except BaseException as exc:  # anything the target did not report itself
        detail = " ".join(str(exc).split())[:200]
        line = f"{label}: internal error: rank {rank}: {type(exc).__name__}: {detail}"
        code = report_failure(rank, EXIT_INTERNAL_ERROR, line)
    report_to.close()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip the interpreter's teardown, which takes seconds after DDP and holds nothing a
    # worker needs: the output is flushed, the checkpoint renamed, the process group left.
    os._exit(code)


@dataclass
class _Worker:
    rank: int
    process: BaseProcess
    reports: Connection
    ended_at: float | None = None
    stopped: bool = False  # the supervisor signalled it to stop

    @property
    def alive(self) -> bool:
        return self.process.exitcode is None


@dataclass
class _Supervisor:
    workers: list[_Worker]
    label: str
    grace_s: float
    failures: list[Failure] = field(default_factory=list)
    failed_at: float | None = None
    stop_at: float | None = None  # when to signal the remaining workers
    kill_at: float | None = None
    interrupts: int = 0
    terminated: bool = False

    def watch(self) -> None:
        """Wait until every worker has ended, stopping the rest once one has failed."""
        while alive := [w for w in self.workers if w.alive]:
            wait([w.process.sentinel for w in alive], timeout=0.2)
            now = time.monotonic()
            for worker in self.workers:
                self._collect(worker, now)
            if self.failed_at is None and any(
                w.process.exitcode not in (None, 0) for w in self.workers
            ):
                self.failed_at = now
                self.stop_at = min(self.stop_at or math.inf, now + self.grace_s)
            self._escalate(now)
        for worker in self.workers:
            worker.process.join()
            self._collect(worker, time.monotonic())

    def _collect(self, worker: _Worker, now: float) -> None:
        try:
            while worker.reports.poll():
                self.failures.append(worker.reports.recv())
        except (EOFError, OSError):
            pass
        if worker.ended_at is None and not worker.alive:
            worker.ended_at = now

    def _escalate(self, now: float) -> None:
        if self.stop_at is not None and now >= self.stop_at and self.kill_at is None:
            self._signal_alive(signal.SIGTERM)
            self.kill_at = now + KILL_AFTER_S
        if self.kill_at is not None and now >= self.kill_at:
            self._signal_alive(signal.SIGKILL)

    def _signal_alive(self, signum: int, *, stopping: bool = True) -> None:
        for worker in self.workers:
            if worker.alive and worker.process.pid is not None:
                worker.stopped = worker.stopped or stopping
                with suppress(ProcessLookupError):  # it ended meanwhile
                    os.kill(worker.process.pid, signum)

    def on_interrupt(self, signum: int, frame: FrameType | None) -> None:
        """First Ctrl-C: every worker cancels after its batch; second: stop them now."""
        self.interrupts += 1
        if self.interrupts == 1:
            self._signal_alive(signal.SIGINT, stopping=False)
        else:
            self.stop_at = time.monotonic()

    def on_terminate(self, signum: int, frame: FrameType | None) -> None:
        self.terminated = True
        self.stop_at = time.monotonic()

    def verdict(self) -> tuple[int, str | None]:
        """The run's exit status and its one line (None when it ended well)."""
        codes = [w.process.exitcode for w in self.workers]
        if all(code == 0 for code in codes):
            return 0, None
        if self.terminated:
            return EXIT_TERMINATED, f"{self.label}: terminated"
        if self.interrupts >= 2:
            return EXIT_INTERRUPTED, f"{self.label}: interrupted"
        cause = self._unreported_end() or min(self.failures, key=lambda f: f.at, default=None)
        if cause is None:
            return EXIT_INTERNAL_ERROR, f"{self.label}: error: the workers ended with {codes}"
        return cause.code, cause.line

    def _unreported_end(self) -> Failure | None:
        reported = {f.rank for f in self.failures}
        for worker in sorted(self.workers, key=lambda w: w.ended_at or math.inf):
            code = worker.process.exitcode
            if code in (None, 0) or worker.rank in reported or worker.stopped:
                continue
            how = (
                f"was killed by {signal.Signals(-code).name}"
                if code < 0
                else f"ended with status {code} and no message"
            )
            line = f"{self.label}: error: rank {worker.rank} {how}; the other ranks were stopped"
            return Failure(worker.rank, EXIT_INTERNAL_ERROR, line, 0.0)
        return None

    def stop_all(self) -> None:
        """End whatever still runs (the supervisor itself is leaving)."""
        self._signal_alive(signal.SIGKILL)
        for worker in self.workers:
            if worker.process.pid is not None:
                worker.process.join()


@contextmanager
def _signals_to(supervisor: _Supervisor) -> Iterator[None]:
    """SIGINT and SIGTERM go to the supervisor's handlers while the workers run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, supervisor.on_interrupt),
        signal.SIGTERM: signal.signal(signal.SIGTERM, supervisor.on_terminate),
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def launch(target: WorkerFn, payload: Any, nproc: int, *, label: str, grace_s: float = 5.0) -> int:
    """Run ``target(payload)`` on ranks ``0..nproc-1`` in spawned processes; returns the exit
    status (0 when every worker returned 0) after printing at most one line on stderr.

    ``target`` and ``payload`` must pickle (a module-level function and plain data).
    """
    context = mp.get_context("spawn")
    port = free_port()
    workers: list[_Worker] = []
    senders: list[Connection] = []
    for rank in range(nproc):
        receive, send = context.Pipe(duplex=False)
        args = (target, payload, label, rank, nproc, port, os.getpid(), send)
        process = context.Process(target=_worker_main, args=args, name=f"{label} rank {rank}")
        workers.append(_Worker(rank, process, receive))
        senders.append(send)
    supervisor = _Supervisor(workers, label, grace_s)
    with _signals_to(supervisor):
        try:
            for worker in workers:
                worker.process.start()
            for send in senders:
                send.close()  # the workers hold their ends; EOF follows their exit
            supervisor.watch()
        finally:
            supervisor.stop_all()
    code, line = supervisor.verdict()
    if line is not None:
        print(line, file=sys.stderr)
    return code
