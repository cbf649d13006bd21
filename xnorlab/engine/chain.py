"""``ConvChain``: several prepared XNOR convs run as one engine call, the values between them
kept in buffers the engine owns and reuses (no Python, no allocation between the calls)."""

from __future__ import annotations

import os
import statistics
import time
import warnings
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from xnorlab.binary.binarize import NaNInputWarning
from xnorlab.engine._backend import get_threads, native_module
from xnorlab.engine._calls import NAN_MESSAGE, native_error, record_conv
from xnorlab.engine.errors import KernelConfigError, KernelInputError, KernelTypeError
from xnorlab.engine.fused import numpy_view
from xnorlab.engine.prepared import PreparedConv2d
from xnorlab.engine.profiling import is_profiling


@dataclass(frozen=True)
class ChainStep:
    """One conv of a :class:`ConvChain`: ``conv`` reads the value in slot ``input`` and adds
    the one in slot ``residual`` (None: no shortcut) in its epilogue. Slot 0 is the chain's
    input, slot ``k`` the output of step ``k - 1``."""

    conv: PreparedConv2d
    input: int = 0
    residual: int | None = None


def _slot_shape(steps: Sequence[ChainStep], k: int, slot: object, what: str) -> torch.Size:
    """The shape of the value in ``slot`` as step ``k`` names it (checked to exist)."""
    if type(slot) is not int or not 0 <= slot <= k:
        raise KernelInputError(
            f"conv chain step {k}: {what} must be 0 (the chain input) or an earlier step's "
            f"output (1..{k}), got {slot!r}"
        )
    return steps[0].conv.input_shape if slot == 0 else steps[slot - 1].conv.out_shape


def _check_steps(steps: Sequence[ChainStep]) -> None:
    """Each step a native prepared conv without a bit output, reading values of its shapes."""
    if not steps:
        raise KernelInputError("a conv chain needs at least one step")
    for k, step in enumerate(steps):
        if not isinstance(step, ChainStep) or not isinstance(step.conv, PreparedConv2d):
            raise KernelTypeError("a conv chain's steps are ChainStep(PreparedConv2d, ...)")
        conv = step.conv
        if not conv.native:
            raise KernelConfigError("a conv chain needs the native engine")
        if conv.next is not None:
            raise KernelInputError(f"conv chain step {k} hands its output packed (bits_for)")
        if k == 0 and step.input != 0:
            raise KernelInputError("conv chain step 0 must read the chain input (slot 0)")
        if _slot_shape(steps, k, step.input, "input") != conv.input_shape:
            raise KernelInputError(
                f"conv chain step {k}: its input (slot {step.input}) does not have the shape "
                f"{tuple(conv.input_shape)} it was prepared for"
            )
        residual = step.residual
        if residual is not None and _slot_shape(steps, k, residual, "residual") != conv.out_shape:
            raise KernelInputError(
                f"conv chain step {k}: its residual (slot {residual}) does not have the "
                f"output's shape {tuple(conv.out_shape)}"
            )


class ThreadChooser:
    """Whether a repeated call runs on the engine's threads or on the calling thread alone,
    from its own wall times: on a shared machine a second thread can make every call slower
    for minutes (benchmarks/RESULTS.md), and the outputs are the same either way.

    The first runs alternate until each choice has ``warmup`` times; the one with the lower
    median is then preferred. Every ``probe_every``-th run tries the other once; when two
    probes in a row beat the median of the preferred choice's last ``warmup`` runs, the other
    becomes the preferred one (a change of the machine is followed within two probes).
    """

    def __init__(self, warmup: int = 3, probe_every: int = 64) -> None:
        self.warmup, self.probe_every = warmup, probe_every
        self._times: dict[int, deque[float]] = {}
        self._preferred: int | None = None
        self._runs = self._wins = 0
        self._probing = False  # whether the last run chosen was a probe

    def choose(self, threads: int) -> int:
        """The thread count of the next run when the engine has ``threads``: 1 or ``threads``."""
        self._probing = False
        if threads <= 1:
            return 1
        self._runs += 1
        alone, pool = self._samples(1), self._samples(threads)
        if self._preferred not in (1, threads):
            if min(len(alone), len(pool)) < self.warmup:
                return 1 if len(alone) < len(pool) else threads
            self._preferred = 1 if statistics.median(alone) < statistics.median(pool) else threads
            self._wins = 0
        if self._runs % self.probe_every == 0:
            self._probing = True
            return threads if self._preferred == 1 else 1
        return self._preferred

    def record(self, threads: int, seconds: float) -> None:
        """The wall time of the run :meth:`choose` chose last (``threads`` threads)."""
        preferred = self._preferred
        if self._probing and preferred is not None:
            recent = self._samples(preferred)
            beats = bool(recent) and seconds < statistics.median(recent)
            self._wins = self._wins + 1 if beats else 0
            if self._wins >= 2:
                self._preferred, self._wins = threads, 0
        self._probing = False
        self._samples(threads).append(seconds)

    def _samples(self, threads: int) -> deque[float]:
        return self._times.setdefault(threads, deque(maxlen=self.warmup))


class ConvChain:
    """Prepared XNOR convs run in order as one native call, each on the chain's input or an
    earlier step's output, optionally adding another as its shortcut: what a network's
    residual blocks need. The result is the last step's output, equal to calling the steps
    one by one (the same engine calls); the values between steps never reach Python.

    With ``adaptive_threads`` (the default unless ``XNORLAB_ADAPTIVE_THREADS=0``) a
    :class:`ThreadChooser` decides per run whether the engine's threads or the calling thread
    alone run it (the results are bit-equal either way); the profile records say which
    (``threads``).

    An input the chain was not prepared for (shape, dtype, memory format) runs the steps one
    by one, with their own fallbacks.
    """

    def __init__(self, steps: Sequence[ChainStep], adaptive_threads: bool | None = None) -> None:
        self.steps = tuple(steps)
        if adaptive_threads is None:
            adaptive_threads = os.environ.get("XNORLAB_ADAPTIVE_THREADS", "1") != "0"
        self.adaptive_threads = adaptive_threads
        self.chooser = ThreadChooser()
        _check_steps(self.steps)
        native = native_module()
        assert native is not None  # every step is native
        items = [step.conv.chain_item(step.input, step.residual) for step in self.steps]
        try:
            self._native = native.ConvChain(items)
        except (ValueError, TypeError) as exc:
            raise native_error(exc) from exc
        self.input_shape = self.steps[0].conv.input_shape
        self.out_shape = self.steps[-1].conv.out_shape

    def __len__(self) -> int:
        return len(self.steps)

    def _takes(self, x: Tensor) -> bool:
        return (
            type(x) is Tensor and x.shape == self.input_shape and x.dtype is torch.float32
            and x.is_cpu and x.is_contiguous(memory_format=torch.channels_last)
        )  # fmt: skip

    def __call__(self, x: Tensor) -> Tensor:
        if not self._takes(x):
            return self.run_steps(x)
        pool = get_threads()
        threads = self.chooser.choose(pool) if self.adaptive_threads else pool
        start = time.perf_counter()
        try:
            out, has_nan, timings = self._native.run(numpy_view(x), threads == 1)
        except (ValueError, TypeError) as exc:
            raise native_error(exc) from exc
        self.chooser.record(threads, time.perf_counter() - start)
        if any(has_nan):
            warnings.warn(NAN_MESSAGE, NaNInputWarning, stacklevel=2)
        if is_profiling():
            self._record(timings, start, threads)
        result: Tensor = torch.from_numpy(out)
        return result

    def run_steps(self, x: Tensor) -> Tensor:
        """The steps one by one (each its own engine call): the chain's reference."""
        values = [x]
        for step in self.steps:
            residual = None if step.residual is None else values[step.residual]
            out = step.conv(values[step.input], residual)
            assert isinstance(out, Tensor)  # no step hands its output packed
            values.append(out)
        return values[-1]

    def _record(self, timings: list[tuple[float, float, float, float]], start: float,
                threads: int) -> None:  # fmt: skip
        """One profile record per step, from the engine's own timing of it; the chain's Python
        overhead counts in the first step's record (the records add up to the call)."""
        overhead = time.perf_counter() - start - sum(t[3] for t in timings)
        for k, (step, timing) in enumerate(zip(self.steps, timings, strict=True)):
            conv = step.conv
            total = timing[3] + (max(0.0, overhead) if k == 0 else 0.0)
            record_conv(conv.input_shape, conv.weight, conv.out_shape, timing, start, total,
                        threads)  # fmt: skip
