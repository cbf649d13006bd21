"""``search_modes``: per-layer modes (float / BWN / XNOR) that keep top-1 within a budget of the
float model's while minimizing measured latency (or packed memory).

1. Two disjoint seeded stratified splits of the data (``search.splits``): *score* chooses,
   *confirm* reports. Without labels, top-1 counts agreement with the float model's top-1.
2. Rank the layers on the score split: every layer's cost both ways
   (``measure.sensitivity``: binarized alone, and restored alone from every layer binarized),
   ``cost = max(0, (binarize_alone + restore_alone) / 2)``, cheapest first, equal costs by
   the larger gain (the layer's measured float - binarized time, or its float - packed bytes);
   layers that gain nothing come last.
3. Walk the ranking greedily from every layer float: each layer gets the objective's mode
   (XNOR for latency, BWN for memory; BWN is the latency fallback where it was measured to
   save time) when the candidate, measured for real (top-1 on the score split, latency
   through the engine against float, packed memory), stays within budget; else it stays
   float. Every measured candidate is kept.
4. The Pareto front of all of them is timed again with more rounds; the chosen point is the
   front point within budget on the score split that is best on the objective, and it is
   reported on the confirm split (which chose nothing), with the float model beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from xnorlab.binary.modes import Backend, Mode
from xnorlab.binary.surgery import layer_configs, wrapped_layers
from xnorlab.common.errors import XnorlabError
from xnorlab.common.tasks import CancelFn, ProgressFn, check_cancel, no_progress
from xnorlab.data.sampling import SAMPLE_SEED
from xnorlab.measure.front import (
    Agreement,
    FrontPoint,
    Objective,
    SearchResult,
    pareto_front,
    within_budget,
)
from xnorlab.measure.intervals import Accuracy
from xnorlab.measure.latency import LatencyPlan
from xnorlab.measure.layers import detached_copy
from xnorlab.measure.machine import engine_context
from xnorlab.measure.memory import model_memory
from xnorlab.measure.sensitivity import SensitivityReport, layer_sensitivity
from xnorlab.models.packed_layers import has_packed_layers
from xnorlab.search.candidates import CAREFUL_PLAN, QUICK_PLAN, Candidates, configs_for, modes_key
from xnorlab.search.finetune import finetune_config, finetune_modes, num_outputs
from xnorlab.search.splits import SearchSplits, splits_of, stack_items

BATCH_SIZE = 128
RANKING_PLAN = LatencyPlan(warmup=1, repeats=12, profile_runs=3, min_time_s=0.15, max_pairs=120)
Modes = dict[str, Mode]
_NOTHING_LEFT = "no items are left to fine-tune on (every item is in the score or confirm split)"


@dataclass(frozen=True)
class SearchOptions:
    """What to search for: ``budget_points`` of top-1 (percentage points) the chosen modes may
    lose against float on the score split; ``objective`` to minimize; ``finetune_epochs`` of
    training for the chosen modes before they are confirmed; ``score_items`` and
    ``confirm_items`` per split (fewer when the data are short: shared in that proportion);
    ``seed`` of both samples and of the fine-tune."""

    budget_points: float
    objective: Objective = Objective.LATENCY
    finetune_epochs: int = 0
    score_items: int = 1000
    confirm_items: int = 1000
    seed: int = SAMPLE_SEED

    def validate(self) -> None:
        """Raise ``XnorlabError`` on options no search can run with."""
        if not (math.isfinite(self.budget_points) and self.budget_points >= 0):
            raise XnorlabError(f"the budget must be a finite number >= 0, got {self.budget_points}")
        if self.finetune_epochs < 0:
            raise XnorlabError(f"fine-tune epochs must be >= 0, got {self.finetune_epochs}")
        if self.score_items < 1 or self.confirm_items < 1:
            raise XnorlabError("the score and confirm splits need at least 1 item each")
        Objective.parse(self.objective)


def target_modes(objective: Objective) -> tuple[Mode, ...]:
    """The modes a layer is tried in, in order: latency gains only from XNOR (BWN keeps float
    inputs) with BWN as the fallback; memory is the same for both, and BWN loses less."""
    return (Mode.XNOR, Mode.BWN) if objective is Objective.LATENCY else (Mode.BWN,)


def objective_key(point: FrontPoint, objective: Objective) -> tuple[float, ...]:
    """Smaller is better: the objective, then the other cost, then accuracy lost."""
    if objective is Objective.MEMORY:
        return (point.memory_bytes, point.latency_ms, -point.accuracy.value)
    return (point.latency_ms, point.memory_bytes, -point.accuracy.value)


# ------------------------------------------------------------------------- progress


class _Ticks:
    """Progress over an estimated number of batches; every call checks for a cancel."""

    def __init__(self, total: int, progress: ProgressFn, should_cancel: CancelFn | None) -> None:
        self.total, self.done, self.stage = max(1, total), 0, "search"
        self.progress, self.should_cancel = progress, should_cancel

    def tick(self) -> None:
        self.done += 1
        self.check()

    def check(self) -> None:
        check_cancel(self.should_cancel, "search")
        self.progress(min(self.done / self.total, 0.99), self.stage)

    def grow(self, extra: int) -> None:
        """The work turned out longer (a fallback mode was tried)."""
        self.total += extra


# ------------------------------------------------------------------------- ranking


def layer_costs(report: SensitivityReport) -> dict[str, float]:
    """``max(0, (binarize_alone + restore_alone) / 2)`` per layer (fractions of top-1)."""
    costs = {}
    for layer in report.layers:
        restore = layer.restore_alone.cost if layer.restore_alone is not None else 0.0
        costs[layer.name] = max(0.0, (layer.binarize_alone.cost + restore) / 2)
    return costs


def rank_layers(costs: dict[str, float], gains: dict[str, float]) -> list[str]:
    """Layers by cost (cheapest first), equal costs by larger gain; layers that gain nothing
    last. The measured costs order the walk, not cost per gain: a per-layer time share is
    noisy, and dividing by it made two runs walk different paths."""
    order = list(costs)

    def key(name: str) -> tuple[int, float, float, int]:
        gain = gains.get(name, 0.0)
        return (int(gain <= 0), costs[name], -gain, order.index(name))

    return sorted(order, key=key)


def _gains(candidates: Candidates, mode: Mode, objective: Objective) -> dict[str, float]:
    """Per layer, what putting it in ``mode`` saves: seconds of its share of the measured
    forward, every layer in ``mode`` against every layer float (``float_vs_current`` split),
    or bytes (float - packed)."""
    every = {name: mode for name in wrapped_layers(candidates.model)}
    if objective is Objective.MEMORY:
        with layer_configs(candidates.model, configs_for(candidates.model, every)):
            layers = model_memory(candidates.model).layers
        return {layer.name: float(layer.float_bytes - layer.packed_bytes) for layer in layers}
    comparison = candidates.compare(every, RANKING_PLAN)
    floats, binarized = comparison.float_side.layers, comparison.current_side.layers
    return {
        name: floats[name].wall_s - binarized[name].wall_s
        for name in every
        if name in floats and name in binarized
    }


def layer_modes(
    name: str, modes: tuple[Mode, ...], gains: dict[Mode, dict[str, float]]
) -> tuple[Mode, ...]:
    """The modes layer ``name`` is tried in: the first always, a fallback only where it was
    measured to gain on the objective (BWN runs float convs: it seldom saves time)."""
    return modes[:1] + tuple(mode for mode in modes[1:] if gains[mode].get(name, 0.0) > 0)


# ------------------------------------------------------------------------- the walk


@dataclass
class _Walk:
    """The walk's state: every point measured (by configuration) and the current modes."""

    candidates: Candidates
    float_accuracy: Accuracy
    budget_points: float
    ticks: _Ticks
    points: dict[tuple[tuple[str, str], ...], FrontPoint]

    def measure(self, modes: Modes) -> FrontPoint:
        key = modes_key(modes)
        if key not in self.points:
            self.points[key] = self.candidates.point(modes, QUICK_PLAN)
        return self.points[key]

    def fits(self, point: FrontPoint) -> bool:
        return within_budget(point.accuracy, self.float_accuracy, self.budget_points)

    def step(self, current: Modes, name: str, modes: tuple[Mode, ...], batches: int) -> Modes:
        """``current`` with layer ``name`` in the first of ``modes`` that stays within budget
        (each tried one is measured and kept), else unchanged."""
        for index, mode in enumerate(modes):
            if index:
                self.ticks.grow(batches + 1)
            self.ticks.stage = f"trying {name} as {mode}"
            trial = {**current, name: mode}
            if self.fits(self.measure(trial)):
                return trial
        return current


def _predictions(model: nn.Module, inputs: Tensor, batch_size: int) -> Tensor:
    """Top-1 classes of ``model`` (as configured) on ``inputs``."""
    with torch.no_grad():
        parts = [
            model(inputs[i : i + batch_size]).argmax(dim=1)
            for i in range(0, len(inputs), batch_size)
        ]
    return torch.cat(parts)


def _batches(count: int) -> int:
    return max(1, -(-count // BATCH_SIZE))


def _estimate(layers: int, score_batches: int, confirm_batches: int) -> int:
    """Progress units of a search: one per batch (float and targets, sensitivity's 2 + 2L
    passes, the walk's L + 1, confirm's 2) and one per timing (float references, ranking,
    the walk, the front again: about 2L + 6)."""
    passes = 2 + (2 + 2 * layers) + (layers + 1)
    return passes * score_batches + 2 * confirm_batches + 2 * layers + 6


def _choose(
    front: tuple[FrontPoint, ...], options: SearchOptions, float_accuracy: Accuracy
) -> FrontPoint | None:
    """The front point within budget that is best on the objective; None when that is the
    float configuration itself (nothing binarized is better)."""
    fitting = [p for p in front if within_budget(p.accuracy, float_accuracy, options.budget_points)]
    if not fitting:
        return None
    best = min(fitting, key=lambda p: objective_key(p, Objective.parse(options.objective)))
    return None if best.binary_layers == 0 else best


def _remeasured(
    candidates: Candidates, front: tuple[FrontPoint, ...], ticks: _Ticks
) -> tuple[FrontPoint, tuple[FrontPoint, ...]]:
    """The float point and every front point timed again with ``CAREFUL_PLAN`` (a fresh float
    reference first); the Pareto front of the re-timed points."""
    ticks.stage = "timing the front again"
    candidates.time_float(CAREFUL_PLAN)
    floats = {name: Mode.FLOAT for name in wrapped_layers(candidates.model)}
    float_point = candidates.point(floats, CAREFUL_PLAN)
    points = [float_point] + [
        candidates.point(p.modes, CAREFUL_PLAN) for p in front if p.binary_layers > 0
    ]
    return float_point, pareto_front(points)


@dataclass(frozen=True)
class _Data:
    """The split items as tensors, and the targets top-1 is counted against."""

    splits: SearchSplits
    score_x: Tensor
    score_y: Tensor
    confirm_x: Tensor
    confirm_y: Tensor


def _load(dataset: Dataset[Any], options: SearchOptions) -> tuple[_Data, np.ndarray]:
    splits, labels = splits_of(dataset, options.score_items, options.confirm_items, options.seed)
    score_x, score_y = stack_items(dataset, splits.score)
    confirm_x, confirm_y = stack_items(dataset, splits.confirm)
    return _Data(splits, score_x, score_y, confirm_x, confirm_y), labels


def search_modes(
    model: nn.Module,
    dataset: Dataset[Any],
    options: SearchOptions,
    *,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
    finetune_data: Dataset[Any] | None = None,
) -> SearchResult:
    """Search per-layer modes of ``model`` (wrapped by ``binarize_model``; never modified: the
    search works on a detached copy) on ``dataset`` (see the module docstring).

    ``finetune_data``: the items ``options.finetune_epochs`` train on (default: the items of
    ``dataset`` in neither split). Progress and cancel as in ``common.tasks``: raises
    ``Cancelled`` when ``should_cancel()`` says so.
    """
    options.validate()
    if has_packed_layers(model):
        raise XnorlabError(
            "the model holds packed 1-bit layers, which stay binary whatever the modes: "
            "search the float model it was exported from"
        )
    report = progress or no_progress
    work = detached_copy(model).eval()
    names = list(wrapped_layers(work))
    if not names:
        raise XnorlabError("the model has no binarizable layer to search over")
    data, labels = _load(dataset, options)
    if options.finetune_epochs and not data.splits.labelled:
        raise XnorlabError("fine-tuning needs labels; these data have none")
    if options.finetune_epochs and finetune_data is None and not len(data.splits.rest):
        raise XnorlabError(_NOTHING_LEFT)
    objective = Objective.parse(options.objective)
    score_batches, confirm_batches = _batches(len(data.score_x)), _batches(len(data.confirm_x))
    ticks = _Ticks(_estimate(len(names), score_batches, confirm_batches), report, should_cancel)
    floats: Modes = {name: Mode.FLOAT for name in names}
    target: Modes = {name: target_modes(objective)[0] for name in names}
    with engine_context(work, Backend.NATIVE):
        metric, score_targets, confirm_targets = _targets(work, data, floats)
        candidates = Candidates(
            work, data.score_x, score_targets, data.score_x[:1], BATCH_SIZE, ticks.tick, ticks.check
        )
        ticks.stage = "float reference"
        candidates.time_float(QUICK_PLAN)
        walk = _Walk(candidates, Accuracy(0, 0), options.budget_points, ticks, {})
        float_point = walk.measure(floats)
        walk.float_accuracy = float_point.accuracy
        ticks.stage = "sensitivity of every layer"
        with layer_configs(work, configs_for(work, target)):
            sensitivity = layer_sensitivity(
                work, data.score_x, score_targets, BATCH_SIZE, ticks.tick
            )
        ticks.stage = "ranking the layers"
        tried = target_modes(objective)
        gains = {mode: _gains(candidates, mode, objective) for mode in tried}
        order = rank_layers(layer_costs(sensitivity), gains[tried[0]])
        current = dict(floats)
        for name in order:
            current = walk.step(current, name, layer_modes(name, tried, gains), score_batches)
        walk.measure(target)
        float_point, front = _remeasured(candidates, pareto_front(walk.points.values()), ticks)
        chosen = _choose(front, options, float_point.accuracy)
        ticks.stage = "confirming"
        confirm_float = _confirm_accuracy(candidates, floats, data.confirm_x, confirm_targets)
        confirm, tuned = None, None
        if chosen is not None and not options.finetune_epochs:
            confirm = _confirm_accuracy(candidates, chosen.modes, data.confirm_x, confirm_targets)
    if chosen is not None and options.finetune_epochs:
        tuned = _finetuned(work, chosen, data, dataset, finetune_data, options, ticks)
        confirm = _tuned_confirm(tuned, chosen, data, ticks)
    report(1.0, "search done")
    return SearchResult(
        float_point=float_point,
        front=front,
        chosen=chosen,
        confirm_accuracy=confirm,
        confirm_float=confirm_float,
        budget_points=options.budget_points,
        objective=objective,
        metric=metric,
        score_sample=data.splits.info(labels, data.splits.score),
        confirm_sample=data.splits.info(labels, data.splits.confirm),
        evaluated=len(walk.points),
        finetune_epochs=options.finetune_epochs if chosen is not None else 0,
        finetuned_model=tuned,
    )


def _targets(work: nn.Module, data: _Data, floats: Modes) -> tuple[Agreement, Tensor, Tensor]:
    """What top-1 counts against: the labels, or (no labels) the float model's top-1."""
    if data.splits.labelled:
        return Agreement.TOP1, data.score_y, data.confirm_y
    with layer_configs(work, configs_for(work, floats)):
        score = _predictions(work, data.score_x, BATCH_SIZE)
        confirm = _predictions(work, data.confirm_x, BATCH_SIZE)
    return Agreement.FLOAT_AGREEMENT, score, confirm


def _confirm_accuracy(
    candidates: Candidates, modes: Modes | Any, inputs: Tensor, targets: Tensor
) -> Accuracy:
    correct = candidates.correct(modes, inputs, targets)
    return Accuracy(int(correct.sum()), len(correct))


def _finetuned(
    work: nn.Module, chosen: FrontPoint, data: _Data, dataset: Dataset[Any],
    finetune_data: Dataset[Any] | None, options: SearchOptions, ticks: _Ticks,
) -> nn.Module:  # fmt: skip
    """The chosen modes fine-tuned (``search.finetune``) on ``finetune_data`` or the items in
    neither split, watching the score split (the last epoch is kept whatever it says)."""
    train_items: Dataset[Any] = (
        finetune_data if finetune_data is not None else Subset(dataset, data.splits.rest.tolist())
    )
    if len(train_items) == 0:  # type: ignore[arg-type]
        raise XnorlabError(_NOTHING_LEFT)
    input_shape = tuple(data.score_x.shape[1:])
    with torch.no_grad():
        classes = num_outputs(work, data.score_x)
    ticks.stage = f"fine-tuning {options.finetune_epochs} epochs"

    def relay(fraction: float, message: str = "", payload: Any = None) -> None:
        ticks.check()

    return finetune_modes(
        work, chosen.modes, train_items, Subset(dataset, data.splits.score.tolist()), classes,
        finetune_config(options.finetune_epochs, options.seed, input_shape), input_shape,
        progress=relay, should_cancel=ticks.should_cancel,
    )  # fmt: skip


def _tuned_confirm(tuned: nn.Module, chosen: FrontPoint, data: _Data, ticks: _Ticks) -> Accuracy:
    """The fine-tuned model in the chosen modes on the confirm split, through the engine."""
    with engine_context(tuned, Backend.NATIVE):
        correct = Candidates(
            tuned, data.confirm_x, data.confirm_y, data.confirm_x[:1], BATCH_SIZE, ticks.tick
        )
        return _confirm_accuracy(correct, chosen.modes, data.confirm_x, data.confirm_y)
