"""Latency of a model, end to end and per binarizable layer: every layer float (torch) vs the
current modes in the chosen engine (the native one unless told otherwise).

``float_vs_current`` is the one place the two are compared: both sides run in one process with
the same threads, end to end in interleaved rounds (``interleaved_samples``), so a change of
machine load hits both alike, and their speed-up is the median of the pairwise ratios with its
interval and noise flag (``RatioEstimate``: median of per-round ratios). In the native engine the
current side is ``xnorlab.deploy(model)`` (``machine.engine_model``: packed, fused). Each side's
per-layer split comes from further profiled runs (``layer_clock`` and the engine's profiler;
for the engine side on ``deploy(model, fuse=False)``, since a fused chain has no layer
boundaries) and is scaled to the side's measured end-to-end median, so the layers plus an
explicit ``unattributed`` part (activations, pooling, Python between the layers) add up to the
whole.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from xnorlab.binary.modes import Backend, Mode
from xnorlab.binary.surgery import iter_binarizable, wrapped_layers
from xnorlab.common.errors import XnorlabError
from xnorlab.common.tasks import CancelFn, ProgressFn, check_cancel, no_progress
from xnorlab.engine import profile
from xnorlab.measure.layers import detached_copy, layer_hooks, layer_mode
from xnorlab.measure.machine import engine_info, engine_model, load_note
from xnorlab.measure.timing import (
    MIN_ROUNDS,
    RatioEstimate,
    RunPlan,
    Timing,
    interleaved_samples,
)
from xnorlab.runtime.deploy import DeployReport, deploy, deploy_report

MIN_REPEATS = 3  # timed runs per side even when a time budget is tight

Tick = Callable[[], None]

# ------------------------------------------------------------------------ the clock


@dataclass
class _LayerRun:
    """One layer in one or more forwards, summed over its calls: wall time and engine split (s)."""

    wall_s: float = 0.0
    pack_s: float = 0.0
    popcount_s: float = 0.0
    scale_s: float = 0.0
    native_calls: int = 0

    def add(self, other: _LayerRun) -> None:
        self.wall_s += other.wall_s
        self.pack_s += other.pack_s
        self.popcount_s += other.popcount_s
        self.scale_s += other.scale_s
        self.native_calls = max(self.native_calls, other.native_calls)  # per forward


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
    """One layer's share of one forward, in seconds (``split_whole``).

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


@dataclass(frozen=True)
class _Profile:
    """Sums over the profiled forwards kept (``steady_runs``): per layer, and the forwards'
    own wall time."""

    layers: dict[str, _LayerRun]
    forwards_s: float
    runs: int


def steady_runs(totals_s: list[float]) -> list[int]:
    """Indices of the runs no slower than the median run: a run the scheduler interrupted
    (tens of milliseconds on a shared machine) would otherwise own the split's sums."""
    if not totals_s:
        return []
    cut = sorted(totals_s)[(len(totals_s) - 1) // 2]
    return [i for i, total in enumerate(totals_s) if total <= cut]


def _profile_layers(model: nn.Module, x: Tensor, runs: int, tick: Tick) -> _Profile:
    """Run ``runs`` clocked and profiled forwards; sums per layer and of the whole forwards
    over the ``steady_runs``."""
    per_run: list[dict[str, _LayerRun]] = []
    totals_s: list[float] = []
    for _ in range(runs):
        with profile() as records, layer_clock(model, records) as clocked:
            start = time.perf_counter()
            model(x)
            totals_s.append(time.perf_counter() - start)
        per_run.append(clocked)
        tick()
    kept = steady_runs(totals_s)
    sums: dict[str, _LayerRun] = {}
    for index in kept:
        for name, run in per_run[index].items():
            sums.setdefault(name, _LayerRun()).add(run)
    return _Profile(sums, sum(totals_s[i] for i in kept), len(kept))


def split_whole(whole_s: float, profiled: _Profile) -> tuple[dict[str, LayerTiming], float]:
    """Split the measured end-to-end time ``whole_s`` over the layers: each layer (and each
    engine part) gets its share of the profiled forwards' time,

        ``layer_s = whole_s * sum(layer wall in profiled runs) / sum(profiled forward walls)``,

    and ``unattributed_s = whole_s - sum(layer_s) >= 0`` is the rest (activations, pooling,
    Python between the layers, the hooks' own cost). The parts add up to the whole that was
    measured without hooks.
    """
    scale = whole_s / profiled.forwards_s if profiled.forwards_s > 0 else 0.0
    layers = {
        name: LayerTiming(
            run.wall_s * scale,
            run.pack_s * scale,
            run.popcount_s * scale,
            run.scale_s * scale,
            run.native_calls,
        )
        for name, run in profiled.layers.items()
    }
    unattributed = whole_s - sum(timing.wall_s for timing in layers.values())
    return layers, max(0.0, unattributed)


# ------------------------------------------------------------------------ both sides


@dataclass(frozen=True)
class LatencyPlan:
    """How the two sides are timed.

    ``warmup`` untimed runs of each side (at least one: it also estimates a run's time), then
    at least ``repeats`` interleaved pairs of end-to-end runs (fewer when ``budget_s`` is given
    and they would exceed it per side, never fewer than ``MIN_REPEATS``), continued until each
    side has ``min_time_s`` of timed runs or ``max_pairs`` pairs; then ``profile_runs`` profiled
    runs per side (``None``: as many as ``repeats``). The speed-up's interval is at
    ``confidence``.
    """

    warmup: int = 2
    repeats: int = 10
    profile_runs: int | None = 3
    budget_s: float | None = None
    min_time_s: float = 0.0
    max_pairs: int = 400
    confidence: float = 0.95  # of the speed-up's interval


@dataclass(frozen=True)
class SideTiming:
    """One side of a comparison: end-to-end timing, the layers' shares of its median (name ->
    timing, ``split_whole``) and the part of the median no layer accounts for."""

    end_to_end: Timing
    layers: dict[str, LayerTiming] = field(default_factory=dict)
    unattributed_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        t = self.end_to_end
        return {
            "median_ms": t.median_s * 1e3, "min_ms": t.min_s * 1e3, "max_ms": t.max_s * 1e3,
            "runs": t.runs, "unattributed_ms": self.unattributed_s * 1e3,
            "layers_ms": {name: timing.wall_s * 1e3 for name, timing in self.layers.items()},
        }  # fmt: skip


@dataclass(frozen=True)
class LatencyComparison:
    """Every layer float (torch) vs the current modes, timed interleaved in one process:
    each side's timing and the speed-up ``float / current`` (``RatioEstimate``)."""

    float_side: SideTiming
    current_side: SideTiming
    speedup: RatioEstimate
    threads: int  # torch threads both sides ran with
    deployed: DeployReport | None = None  # what deploy did (None: the current side ran in torch)

    @property
    def noisy(self) -> bool:
        return self.speedup.noisy

    def deploy_text(self) -> str:
        """One line on how the current side ran: its ``DeployReport`` or torch."""
        return "current side in torch" if self.deployed is None else self.deployed.text()

    def text(self) -> str:
        """``float 7.1 ms -> current 5.52 ms, speed-up 1.29x [1.25, 1.33] (30 rounds)``."""
        f, c = self.float_side.end_to_end.median_s, self.current_side.end_to_end.median_s
        return f"float {f * 1e3:.3g} ms -> current {c * 1e3:.3g} ms, speed-up {self.speedup.text()}"

    def to_json(self) -> dict[str, Any]:
        return {
            "float": self.float_side.to_json(),
            "current": self.current_side.to_json(),
            "speedup": self.speedup.to_json(),
            "threads": self.threads,
            "deploy": self.deploy_text(),
        }


def runs_within(budget_s: float, one_run_s: float, repeats: int) -> int:
    """How many timed runs fit in ``budget_s`` (at least ``MIN_REPEATS``, at most ``repeats``)."""
    return max(min(MIN_REPEATS, repeats), min(repeats, int(budget_s / max(one_run_s, 1e-9))))


def _warm(model: nn.Module, x: Tensor, runs: int, tick: Tick) -> float:
    """Run ``model(x)`` ``runs`` times; the last run's seconds."""
    elapsed = 0.0
    for _ in range(runs):
        start = time.perf_counter()
        model(x)
        elapsed = time.perf_counter() - start
        tick()
    return elapsed


def _float_copy(model: nn.Module) -> nn.Module:
    """A copy sharing ``model``'s tensors with every wrapped layer float (for its own caches)."""
    copy = detached_copy(model)
    for layer in wrapped_layers(copy).values():
        layer.config = layer.config.updated(mode=Mode.FLOAT)
    return copy


def float_vs_current(
    model: nn.Module, x: Tensor, plan: LatencyPlan, backend: Backend, tick: Tick
) -> LatencyComparison:
    """Time ``model`` with every layer float in torch against its current modes with its
    binarized layers in ``backend``, without gradients, in interleaved rounds (a float copy
    sharing the weights keeps each side's caches warm). In the native engine the current side
    is ``engine_model(model)`` (deployed, fused) and its per-layer split is profiled on the
    unfused deploy (module doc). ``tick()`` runs between timed blocks, never inside one.
    ``model`` itself is not changed."""
    floating = _float_copy(model).eval()
    current = engine_model(model, backend)
    split_net = deploy(model, fuse=False) if current is not model else model
    with torch.no_grad():
        warm = max(plan.warmup, 1)
        one_run_s = max(_warm(floating, x, warm, tick), _warm(current, x, warm, tick))
        runs = plan.repeats
        if plan.budget_s is not None:
            runs = runs_within(plan.budget_s, one_run_s, plan.repeats)
        block = max(1, min(4, runs // MIN_ROUNDS))  # blocks of 4, but MIN_ROUNDS rounds
        run_plan = RunPlan(warmup=0, min_runs=runs, max_runs=max(runs, plan.max_pairs),
                           min_total_s=plan.min_time_s, block=block)  # fmt: skip
        samples = interleaved_samples({"float": (tick, lambda: floating(x)),
                                       "current": (tick, lambda: current(x))}, run_plan)  # fmt: skip
        profile_runs = plan.repeats if plan.profile_runs is None else plan.profile_runs
        profile_runs = max(1, min(profile_runs, runs))
        sides = []
        for name, net in (("float", floating), ("current", split_net)):
            whole = Timing.from_samples(samples[name])
            layers, rest = split_whole(whole.median_s, _profile_layers(net, x, profile_runs, tick))
            sides.append(SideTiming(whole, layers, rest))
    speedup = RatioEstimate.from_samples(samples["float"], samples["current"], load_note(),
                                         block=run_plan.block, confidence=plan.confidence)  # fmt: skip
    return LatencyComparison(
        sides[0], sides[1], speedup, torch.get_num_threads(), deploy_report(current)
    )


# ------------------------------------------------------------ the metrics panel's report


@dataclass(frozen=True)
class LayerLatency:
    """One layer's share of the end-to-end medians (seconds, ``split_whole``).

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

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "mode": str(self.mode), "float_ms": self.float_s * 1e3,
            "current_ms": self.current_s * 1e3, "pack_ms": self.pack_s * 1e3,
            "popcount_ms": self.popcount_s * 1e3, "scale_ms": self.scale_s * 1e3,
            "other_ms": self.other_s * 1e3, "native_calls": self.native_calls,
        }  # fmt: skip


@dataclass(frozen=True)
class LatencyReport:
    """End-to-end latency, torch float vs the current configuration through the native engine,
    timed interleaved (``float_vs_current``); what the app shows.

    ``comparison`` holds the speed-up with its interval and noise flag and each side's split;
    ``layers`` are the layers' shares of the medians, and ``float_unattributed_s`` /
    ``current_unattributed_s`` the parts no layer accounts for (layers + unattributed = median).
    """

    batch: int
    repeats: int  # end-to-end runs per side, interleaved
    float_s: float  # median end-to-end seconds, every layer float, torch
    current_s: float  # median end-to-end seconds, current modes, native backend
    float_min_max_s: tuple[float, float]
    current_min_max_s: tuple[float, float]
    engine: str  # e.g. "native avx512, 2 threads"
    layers: tuple[LayerLatency, ...]
    comparison: LatencyComparison

    @property
    def speedup(self) -> float:
        """Median of the pairwise ratios ``float / current`` (> 1: the current one is faster)."""
        return self.comparison.speedup.median

    @property
    def speedup_interval(self) -> tuple[float, float]:
        return self.comparison.speedup.low, self.comparison.speedup.high

    @property
    def noisy(self) -> bool:
        return self.comparison.noisy

    @property
    def noise_reason(self) -> str | None:
        return self.comparison.speedup.noise_reason

    @property
    def float_unattributed_s(self) -> float:
        return self.comparison.float_side.unattributed_s

    @property
    def current_unattributed_s(self) -> float:
        return self.comparison.current_side.unattributed_s

    def text(self) -> str:
        """Three lines: the comparison, the engine and the unattributed parts, what deploy
        did."""
        return (
            f"{self.comparison.text()}\n"
            f"engine {self.engine}, batch {self.batch}; not in any layer: float "
            f"{self.float_unattributed_s * 1e3:.3g} ms, current "
            f"{self.current_unattributed_s * 1e3:.3g} ms\n{self.comparison.deploy_text()}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "engine": self.engine,
            **self.comparison.to_json(),
            "layers": [layer.to_json() for layer in self.layers],
        }


def _layer_latencies(model: nn.Module, comparison: LatencyComparison) -> tuple[LayerLatency, ...]:
    out = []
    for name, module in iter_binarizable(model):
        current = comparison.current_side.layers.get(name)
        if current is None:
            continue  # layer not reached by the forward pass
        floating = comparison.float_side.layers.get(name)
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
    min_time_s: float = 0.5,
    confidence: float = 0.95,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
) -> LatencyReport:
    """Time ``model`` end to end in torch float and in its current modes (native engine).

    Works on a detached copy (the caller's model is never touched), on a random batch. The
    two sides run in interleaved rounds (``float_vs_current``): at least ``repeats`` pairs
    after ``warmup`` runs (at least one), without hooks, continued until each side has
    ``min_time_s`` of timed runs (a tighter interval; at most half the budget); the per-layer
    split comes from ``profile_runs`` further runs with timing hooks and the native profiler
    (``xnorlab.engine.profile``). ``time_budget_s`` caps the pairs at about half the budget
    per side (never fewer than ``MIN_REPEATS``), so a large model is measured in bounded time.
    ``confidence``: of the speed-up's interval.
    """
    if batch < 1 or repeats < 1 or profile_runs < 1 or warmup < 0 or min_time_s < 0:
        raise XnorlabError(
            "batch, repeats and profile_runs must be >= 1, warmup and min_time_s >= 0"
        )
    report = progress or no_progress
    work = detached_copy(model).eval()
    x = torch.randn(batch, *input_shape)
    half = None if time_budget_s is None else time_budget_s / 2
    min_time = min_time_s if half is None else min(min_time_s, half)
    plan = LatencyPlan(warmup, repeats, profile_runs, half, min_time_s=min_time,
                       confidence=confidence)  # fmt: skip
    total, done = 2 * (max(warmup, 1) + repeats + profile_runs), [0]

    def tick() -> None:
        done[0] += 1
        report(min(done[0] / total, 0.99), "measuring latency")
        check_cancel(should_cancel, "latency measurement")

    comparison = float_vs_current(work, x, plan, Backend.NATIVE, tick)
    report(1.0, "latency measured")
    floats, currents = comparison.float_side.end_to_end, comparison.current_side.end_to_end
    return LatencyReport(
        batch=batch,
        repeats=min(floats.runs, currents.runs),
        float_s=floats.median_s,
        current_s=currents.median_s,
        float_min_max_s=(floats.min_s, floats.max_s),
        current_min_max_s=(currents.min_s, currents.max_s),
        engine=engine_info().description,
        layers=_layer_latencies(work, comparison),
        comparison=comparison,
    )
