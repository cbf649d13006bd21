"""Latency float vs current: the per-layer split, the model left alone, budget, cancel."""

from __future__ import annotations

import pytest
import torch
from measure_support import binarized

from xnorlab.binary.modes import Backend, Mode
from xnorlab.binary.surgery import current_modes
from xnorlab.common.errors import XnorlabError
from xnorlab.common.tasks import Cancelled
from xnorlab.measure.latency import (
    MIN_REPEATS,
    LatencyPlan,
    float_vs_current,
    measure_latency,
    runs_within,
)
from xnorlab.measure.machine import engine_info


def test_latency_split_adds_up_and_leaves_the_model_alone() -> None:
    model = binarized("paper")
    before = {
        name: layer.config for name, layer in model.named_modules() if hasattr(layer, "config")
    }
    fractions: list[float] = []
    report = measure_latency(model, (1, 8, 8), repeats=3, warmup=1, profile_runs=2,
                             progress=lambda f, *_: fractions.append(f))  # fmt: skip
    assert [layer.name for layer in report.layers] == ["0", "3", "5"]
    for layer in report.layers:
        parts = layer.pack_s + layer.popcount_s + layer.scale_s + layer.other_s
        assert parts == pytest.approx(layer.current_s)
        assert layer.float_s > 0
    assert report.float_min_max_s[0] <= report.float_s <= report.float_min_max_s[1]
    assert report.engine
    assert fractions[-1] == pytest.approx(1.0) and fractions == sorted(fractions)
    after = {
        name: layer.config for name, layer in model.named_modules() if hasattr(layer, "config")
    }
    assert after == before


def test_latency_cancel_and_bad_arguments() -> None:
    with pytest.raises(Cancelled):
        measure_latency(binarized(), (1, 8, 8), should_cancel=lambda: True)
    with pytest.raises(XnorlabError):
        measure_latency(binarized(), (1, 8, 8), repeats=0)


def test_latency_time_budget_bounds_the_timed_runs() -> None:
    model = binarized("paper")
    tight = measure_latency(model, (1, 8, 8), repeats=50, warmup=1, profile_runs=1,
                            time_budget_s=1e-9)  # fmt: skip
    assert tight.repeats == MIN_REPEATS
    roomy = measure_latency(model, (1, 8, 8), repeats=4, warmup=1, profile_runs=1,
                            time_budget_s=60.0)  # fmt: skip
    assert roomy.repeats == 4


def test_float_vs_current_times_each_side_with_as_many_profiled_runs() -> None:
    model = binarized("paper")
    ticks: list[int] = []
    plan = LatencyPlan(warmup=1, repeats=4, profile_runs=None)
    x = torch.randn(1, 1, 8, 8)
    float_side, current_side = float_vs_current(model, x, plan, Backend.NATIVE,
                                                lambda: ticks.append(1))  # fmt: skip
    assert len(ticks) == 2 * (1 + 4 + 4)  # per side: warm-up, end to end, profiled
    for side in (float_side, current_side):
        assert side.end_to_end.runs == 4 and set(side.layers) == {"0", "3", "5"}
    assert float_side.layers["3"].native_calls == 0
    native = engine_info().is_native
    assert (current_side.layers["3"].native_calls == 1) == native
    assert current_side.layers["0"].native_calls == 0  # float in both
    assert current_modes(model)["3"] is Mode.XNOR


def test_runs_within_a_budget() -> None:
    assert runs_within(1.0, 0.1, 50) == 10
    assert runs_within(1.0, 0.1, 4) == 4
    assert runs_within(1e-9, 0.1, 50) == MIN_REPEATS
    assert runs_within(1e-9, 0.1, 2) == 2  # never more than asked for
