"""Latency of a model, end to end and per binarizable layer: every layer float (torch) vs the
current modes in the chosen engine (the native one unless told otherwise).

One side (float or current) is timed by ``time_side``: warm-up runs, end-to-end runs without
hooks, then profiled runs with the per-layer clock (``layer_clock``) and the engine's profiler.
``float_vs_current`` times both sides of one model; the metrics panel (``measure_latency``) and
the report both use it, so the two sides are compared in one place.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from xnorlab.binary.modes import Backend, Mode
from xnorlab.binary.surgery import float_mode, iter_binarizable
from xnorlab.common.errors import XnorlabError
from xnorlab.common.tasks import CancelFn, ProgressFn, check_cancel, no_progress
from xnorlab.engine import profile
from xnorlab.measure.layers import detached_copy, layer_hooks, layer_mode
from xnorlab.measure.machine import engine_context, engine_info
from xnorlab.measure.timing import Timing

MIN_REPEATS = 3  # timed runs per side even when a time budget is tight

Tick = Callable[[], None]

# ------------------------------------------------------------------------ the clock


@dataclass
class _LayerRun:
    """One layer in one forward, summed over its calls: wall time and engine split (s)."""

    wall_s: float = 0.0
    pack_s: float = 0.0
    popcount_s: float = 0.0
    scale_s: float = 0.0
    native_calls: int = 0


@contextmanager
def layer_clock(model: nn.Module, records: list[Any]) -> Iterator[dict[str, _LayerRun]]:
    """Clock every binarizable layer of the forwards run inside the block.

    ``records`` is the list an ``xnorlab.engine.profile()`` block fills; the native calls a
    layer makes while it runs are its kernel split. Yields name -> ``_LayerRun``.
    """
    runs: dict[str, _LayerRun] = {}
    started: dict[str, tuple[float, int]] = {}

    def pre(name: str) -> None:
        started[name] = (time.perf_counter(), len(records))

    def post(name: str, _args: tuple[Any, ...], _output: Any) -> None:
        start, first = started.pop(name)
        run = runs.setdefault(name, _LayerRun())
        run.wall_s += time.perf_counter() - start
        for record in records[first:]:
            run.pack_s += float(record.pack_s)
            run.popcount_s += float(record.popcount_s)
            run.scale_s += float(record.scale_s)
            run.native_calls += 1

    with layer_hooks(model, post, pre):
        yield runs


@dataclass(frozen=True)
class LayerTiming:
    """One layer in one forward: medians over the profiled runs, in seconds.

    ``pack_s``, ``popcount_s`` and ``scale_s`` come from the engine's profiler (0 without a
    native call); ``other_s = wall_s - pack_s - popcount_s - scale_s`` (allocation, padding
    correction, Python, and everything of a layer that runs in torch).
    """

    wall_s: float
    pack_s: float
    popcount_s: float
    scale_s: float
    native_calls: int  # per forward

    @property
    def other_s(self) -> float:
        return max(0.0, self.wall_s - self.pack_s - self.popcount_s - self.scale_s)


def _median_timing(runs: list[_LayerRun]) -> LayerTiming:
    def median(part: str) -> float:
        return float(statistics.median(float(getattr(run, part)) for run in runs))

    calls = max(run.native_calls for run in runs)
    return LayerTiming(median("wall_s"), median("pack_s"), median("popcount_s"),
                       median("scale_s"), calls)  # fmt: skip


def _profile_layers(model: nn.Module, x: Tensor, runs: int, tick: Tick) -> dict[str, LayerTiming]:
    """Run ``runs`` clocked and profiled forwards; medians per layer."""
    per_layer: dict[str, list[_LayerRun]] = {}
    for _ in range(runs):
        with profile() as records, layer_clock(model, records) as clocked:
            model(x)
        for name, run in clocked.items():
            per_layer.setdefault(name, []).append(run)
        tick()
    return {name: _median_timing(layer_runs) for name, layer_runs in per_layer.items()}


# ------------------------------------------------------------------------ one side


@dataclass(frozen=True)
class LatencyPlan:
    """How one side is timed.

    ``warmup`` untimed runs (at least one: the last estimates a run's time), ``repeats``
    end-to-end runs (fewer when ``budget_s`` is given and they would exceed it, never fewer
    than ``MIN_REPEATS``), then ``profile_runs`` profiled runs (``None``: as many as the
    end-to-end runs).
    """

    warmup: int = 2
    repeats: int = 10
    profile_runs: int | None = 3
    budget_s: float | None = None


@dataclass(frozen=True)
class SideTiming:
    """One side of a comparison: end-to-end timing and per-layer medians (name -> timing)."""

    end_to_end: Timing
    layers: dict[str, LayerTiming] = field(default_factory=dict)


def runs_within(budget_s: float, one_run_s: float, repeats: int) -> int:
    """How many timed runs fit in ``budget_s`` (at least ``MIN_REPEATS``, at most ``repeats``)."""
    return max(min(MIN_REPEATS, repeats), min(repeats, int(budget_s / max(one_run_s, 1e-9))))


def _time_forward(model: nn.Module, x: Tensor, runs: int, tick: Tick) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - start)
        tick()
    return times


def time_side(model: nn.Module, x: Tensor, plan: LatencyPlan, tick: Tick) -> SideTiming:
    """Time ``model(x)`` as it is configured now; ``tick()`` after every run."""
    warm = _time_forward(model, x, max(plan.warmup, 1), tick)
    runs = plan.repeats
    if plan.budget_s is not None:
        runs = runs_within(plan.budget_s, warm[-1], plan.repeats)
    times = _time_forward(model, x, runs, tick)
    profile_runs = runs if plan.profile_runs is None else plan.profile_runs
    return SideTiming(Timing.from_samples(times), _profile_layers(model, x, profile_runs, tick))


def float_vs_current(
    model: nn.Module, x: Tensor, plan: LatencyPlan, backend: Backend, tick: Tick
) -> tuple[SideTiming, SideTiming]:
    """Time ``model`` with every layer float in torch, then in its current modes with its
    binarized layers in ``backend``; without gradients. The model's configs are restored."""
    with torch.no_grad():
        with float_mode(model):
            float_side = time_side(model, x, plan, tick)
        with engine_context(model, backend):
            current_side = time_side(model, x, plan, tick)
    return float_side, current_side


# ------------------------------------------------------------ the metrics panel's report


@dataclass(frozen=True)
class LayerLatency:
    """Time of one layer in one forward pass (medians over the profiled runs, seconds).

    ``current_s`` is the layer's wall time in its current mode; ``pack_s``, ``popcount_s`` and
    ``scale_s`` come from the native engine's profiler; ``other_s = current_s - pack_s -
    popcount_s - scale_s`` (allocation, padding correction, Python, and everything of a layer
    that runs in torch).
    """

    name: str
    mode: Mode
    float_s: float
    current_s: float
    pack_s: float
    popcount_s: float
    scale_s: float
    other_s: float
    native_calls: int


@dataclass(frozen=True)
class LatencyReport:
    """End-to-end latency, torch float vs the current configuration through the native engine."""

    batch: int
    repeats: int
    float_s: float  # median end-to-end seconds, every layer float, torch
    current_s: float  # median end-to-end seconds, current modes, native backend
    float_min_max_s: tuple[float, float]
    current_min_max_s: tuple[float, float]
    engine: str  # e.g. "native avx512, 2 threads"
    layers: tuple[LayerLatency, ...]

    @property
    def speedup(self) -> float:
        """``float_s / current_s`` (> 1 means the current configuration is faster)."""
        return self.float_s / self.current_s if self.current_s > 0 else float("nan")


def _layer_latencies(
    model: nn.Module, float_side: SideTiming, current_side: SideTiming
) -> tuple[LayerLatency, ...]:
    out = []
    for name, module in iter_binarizable(model):
        current = current_side.layers.get(name)
        if current is None:
            continue  # layer not reached by the forward pass
        floating = float_side.layers.get(name)
        float_s = floating.wall_s if floating is not None else float("nan")
        out.append(LayerLatency(
            name, layer_mode(module), float_s, current.wall_s, current.pack_s,
            current.popcount_s, current.scale_s, current.other_s, current.native_calls,
        ))  # fmt: skip
    return tuple(out)


def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    batch: int = 1,
    repeats: int = 10,
    warmup: int = 2,
    profile_runs: int = 3,
    time_budget_s: float | None = None,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
) -> LatencyReport:
    """Time ``model`` end to end in torch float and in its current modes (native engine).

    Works on a detached copy (the caller's model is never touched), on a random batch.
    End-to-end times are the median of ``repeats`` forward passes after ``warmup`` passes (at
    least one), without hooks; the per-layer split comes from ``profile_runs`` further passes
    with timing hooks and the native profiler (``xnorlab.engine.profile``). ``time_budget_s``
    caps the timed runs of each side at about half the budget (never fewer than
    ``MIN_REPEATS``), so a large model is measured in bounded time.
    """
    if batch < 1 or repeats < 1 or profile_runs < 1 or warmup < 0:
        raise XnorlabError("batch, repeats and profile_runs must be >= 1, warmup >= 0")
    report = progress or no_progress
    work = detached_copy(model).eval()
    x = torch.randn(batch, *input_shape)
    half = None if time_budget_s is None else time_budget_s / 2
    plan = LatencyPlan(warmup, repeats, profile_runs, half)
    total, done = 2 * (max(warmup, 1) + repeats + profile_runs), [0]

    def tick() -> None:
        done[0] += 1
        report(min(done[0] / total, 0.99), "measuring latency")
        check_cancel(should_cancel, "latency measurement")

    float_side, current_side = float_vs_current(work, x, plan, Backend.NATIVE, tick)
    report(1.0, "latency measured")
    floats, currents = float_side.end_to_end, current_side.end_to_end
    return LatencyReport(
        batch=batch,
        repeats=min(floats.runs, currents.runs),
        float_s=floats.median_s,
        current_s=currents.median_s,
        float_min_max_s=(floats.min_s, floats.max_s),
        current_min_max_s=(currents.min_s, currents.max_s),
        engine=engine_info().description,
        layers=_layer_latencies(work, float_side, current_side),
    )
