"""Measuring one candidate configuration: top-1 on the score split, latency through the engine
against float, packed memory.

Latency: each candidate is timed interleaved against every-layer-float in one run
(``measure.latency.float_vs_current``), so a change of machine load hits both sides alike; its
``latency_ms`` is ``float_ms / speed-up`` with the speed-up's interval, where ``float_ms`` is
one float reference for the whole search. Candidates measured at different moments are then
compared through their ratios to float, not through raw times taken under different loads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from xnorlab.binary.layers import LayerConfig
from xnorlab.binary.modes import Backend, Mode
from xnorlab.binary.surgery import layer_configs, wrapped_layers
from xnorlab.measure.accuracy import tensor_correct
from xnorlab.measure.front import FrontPoint
from xnorlab.measure.intervals import Accuracy
from xnorlab.measure.latency import LatencyComparison, LatencyPlan, float_vs_current
from xnorlab.measure.memory import model_memory

Tick = Callable[[], None]
Modes = Mapping[str, Mode]

# A candidate on the walk: a short interleaved run (its interval says how short).
QUICK_PLAN = LatencyPlan(warmup=1, repeats=12, profile_runs=1, min_time_s=0.15, max_pairs=120)
# The front, measured again at the end: more rounds, a tighter interval.
CAREFUL_PLAN = LatencyPlan(warmup=2, repeats=30, profile_runs=1, min_time_s=0.6, max_pairs=400)


def configs_for(model: nn.Module, modes: Modes) -> dict[str, LayerConfig]:
    """Every wrapper's config with its mode from ``modes`` (float where not named)."""
    return {
        name: layer.config.updated(mode=modes.get(name, Mode.FLOAT))
        for name, layer in wrapped_layers(model).items()
    }


def modes_key(modes: Modes) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((name, str(mode)) for name, mode in modes.items()))


@dataclass(frozen=True)
class Timed:
    """One candidate's latency: ``float_vs_current`` of it, and the float reference used."""

    comparison: LatencyComparison
    float_ms: float

    @property
    def latency_ms(self) -> float:
        return self.float_ms / self.comparison.speedup.median

    @property
    def interval_ms(self) -> tuple[float, float]:
        speedup = self.comparison.speedup
        return self.float_ms / speedup.high, self.float_ms / speedup.low


class Candidates:
    """Measures configurations of ``model`` (a private copy, eval mode, run inside the
    caller's engine context): top-1 of ``inputs`` against ``targets`` (labels, or the float
    model's predictions), latency on ``timing_input`` (batch 1) and packed bytes.

    ``tick()`` runs after every batch and once per timing (progress and cancel); ``check()``
    between timed blocks (cancel only; default ``tick``).
    """

    def __init__(
        self, model: nn.Module, inputs: Tensor, targets: Tensor, timing_input: Tensor,
        batch_size: int, tick: Tick, check: Tick | None = None,
    ) -> None:  # fmt: skip
        self.model, self.inputs, self.targets = model, inputs, targets
        self.timing_input, self.batch_size, self.tick = timing_input, batch_size, tick
        self.check = check or tick
        self.float_ms = float("nan")  # set by ``time_float``
        self._correct: dict[tuple[tuple[str, str], ...], np.ndarray] = {}

    def correct(
        self, modes: Modes, inputs: Tensor | None = None, targets: Tensor | None = None
    ) -> np.ndarray:
        """Per-item top-1 of ``modes`` on the score items (or on ``inputs``/``targets``)."""
        scored = inputs is None
        key = modes_key(modes)
        if scored and key in self._correct:
            return self._correct[key]
        x = self.inputs if inputs is None else inputs
        y = self.targets if targets is None else targets
        with layer_configs(self.model, configs_for(self.model, modes)):
            result = tensor_correct(self.model, x, y, self.batch_size, self.tick)
        if scored:
            self._correct[key] = result
        return result

    def accuracy(self, modes: Modes) -> Accuracy:
        correct = self.correct(modes)
        return Accuracy(int(correct.sum()), len(correct))

    def memory_bytes(self, modes: Modes) -> int:
        with layer_configs(self.model, configs_for(self.model, modes)):
            return model_memory(self.model).packed_bytes

    def compare(self, modes: Modes, plan: LatencyPlan) -> LatencyComparison:
        """``modes`` against every layer float, interleaved (``float_vs_current``)."""
        with layer_configs(self.model, configs_for(self.model, modes)), torch.no_grad():
            comparison = float_vs_current(
                self.model, self.timing_input, plan, Backend.NATIVE, self.check
            )
        self.tick()
        return comparison

    def time_float(self, plan: LatencyPlan) -> float:
        """Set and return the float reference (ms): the float side's median of a float vs
        float run with ``plan``."""
        floats = {name: Mode.FLOAT for name in wrapped_layers(self.model)}
        self.float_ms = self.compare(floats, plan).float_side.end_to_end.median_s * 1e3
        return self.float_ms

    def timed(self, modes: Modes, plan: LatencyPlan) -> Timed:
        return Timed(self.compare(modes, plan), self.float_ms)

    def point(self, modes: Modes, plan: LatencyPlan) -> FrontPoint:
        """``modes`` measured: accuracy on the score items, latency with ``plan``, memory."""
        timed = self.timed(modes, plan)
        return FrontPoint(
            modes=dict(modes),
            accuracy=self.accuracy(modes),
            latency_ms=timed.latency_ms,
            latency_interval_ms=timed.interval_ms,
            memory_bytes=self.memory_bytes(modes),
        )
