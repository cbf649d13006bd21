"""``ConvChain``: several prepared XNOR convs run as one engine call, the values between them
kept in buffers the engine owns and reuses (no Python, no allocation between the calls)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from xnorlab.binary.binarize import NaNInputWarning
from xnorlab.engine._backend import native_module
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


class ConvChain:
    """Prepared XNOR convs run in order as one native call, each on the chain's input or an
    earlier step's output, optionally adding another as its shortcut: what a network's
    residual blocks need. The result is the last step's output, equal to calling the steps
    one by one (the same engine calls); the values between steps never reach Python.

    An input the chain was not prepared for (shape, dtype, memory format) runs the steps one
    by one, with their own fallbacks.
    """

    def __init__(self, steps: Sequence[ChainStep]) -> None:
        self.steps = tuple(steps)
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
        start = time.perf_counter()
        try:
            out, has_nan, timings = self._native.run(numpy_view(x))
        except (ValueError, TypeError) as exc:
            raise native_error(exc) from exc
        if any(has_nan):
            warnings.warn(NAN_MESSAGE, NaNInputWarning, stacklevel=2)
        if is_profiling():
            self._record(timings, start)
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

    def _record(self, timings: list[tuple[float, float, float, float]], start: float) -> None:
        """One profile record per step, from the engine's own timing of it; the chain's Python
        overhead counts in the first step's record (the records add up to the call)."""
        overhead = time.perf_counter() - start - sum(t[3] for t in timings)
        for k, (step, timing) in enumerate(zip(self.steps, timings, strict=True)):
            conv = step.conv
            total = timing[3] + (max(0.0, overhead) if k == 0 else 0.0)
            record_conv(conv.input_shape, conv.weight, conv.out_shape, timing, start, total)
