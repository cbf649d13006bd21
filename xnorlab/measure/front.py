"""The answer to "what should I binarize?" as data: candidate configurations with their
measured accuracy, latency and packed memory, and the Pareto front among them.

A point dominates another when it is no worse on all three of (accuracy higher, latency
lower, memory lower) and strictly better on one. The search (``xnorlab.search``) produces a
``SearchResult``; the CLI, the app's Search panel and the report only read it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from xnorlab.binary.modes import Mode, StrChoice
from xnorlab.data.sampling import SampleInfo
from xnorlab.measure.intervals import Accuracy


class Objective(StrChoice):
    """What the search minimizes while accuracy stays within the budget."""

    LATENCY = "latency"  # measured median through the engine, batch 1
    MEMORY = "memory"  # packed bytes (binary weights at 1 bit)


class Agreement(StrChoice):
    """What a point's accuracy counts: top-1 against labels, or top-1 agreement with the
    float model's predictions (data without labels)."""

    TOP1 = "top1"
    FLOAT_AGREEMENT = "agreement"


MODE_LETTERS = {Mode.FLOAT: "F", Mode.BWN: "B", Mode.XNOR: "X"}


def modes_letters(modes: Mapping[str, Mode | str]) -> str:
    """A configuration in one letter per layer, in model order: F float, B BWN, X XNOR."""
    return "".join(MODE_LETTERS[Mode.parse(mode)] for mode in modes.values())


@dataclass(frozen=True)
class FrontPoint:
    """One configuration, measured: ``modes`` maps every binarizable layer to its mode;
    ``accuracy`` is on the score split; ``latency_ms`` the median of interleaved runs with its
    95 % interval ``latency_interval_ms``; ``memory_bytes`` the packed storage."""

    modes: Mapping[str, Mode]
    accuracy: Accuracy
    latency_ms: float
    latency_interval_ms: tuple[float, float]
    memory_bytes: int

    @property
    def binary_layers(self) -> int:
        return sum(1 for mode in self.modes.values() if mode is not Mode.FLOAT)

    def dominates(self, other: FrontPoint) -> bool:
        """No worse on accuracy, latency and memory, and better on at least one."""
        mine = (-self.accuracy.value, self.latency_ms, self.memory_bytes)
        theirs = (-other.accuracy.value, other.latency_ms, other.memory_bytes)
        return all(a <= b for a, b in zip(mine, theirs, strict=True)) and mine != theirs

    def to_json(self) -> dict[str, Any]:
        return {
            "modes": {name: str(mode) for name, mode in self.modes.items()},
            "accuracy": self.accuracy.value,
            "accuracy_detail": self.accuracy.to_json(),
            "latency_ms": self.latency_ms,
            "latency_interval_ms": list(self.latency_interval_ms),
            "memory_bytes": self.memory_bytes,
        }


def within_budget(point: Accuracy, floats: Accuracy, budget_points: float) -> bool:
    """``point >= float - budget`` on the same items: ``hits >= float_hits - budget * n / 100``."""
    return point.hits >= floats.hits - budget_points * floats.n / 100 - 1e-9


def pareto_front(points: Iterable[FrontPoint]) -> tuple[FrontPoint, ...]:
    """The points no other point dominates, each configuration once, by latency then memory."""
    unique = {tuple(sorted((k, str(v)) for k, v in p.modes.items())): p for p in points}
    candidates = list(unique.values())
    front = [p for p in candidates if not any(q.dominates(p) for q in candidates)]
    return tuple(sorted(front, key=lambda p: (p.latency_ms, p.memory_bytes)))


@dataclass(frozen=True)
class SearchResult:
    """What a search found. ``float_point``: every layer float. ``front``: the Pareto front
    of every configuration evaluated. ``chosen``: the front point within ``budget_points`` of
    the float accuracy on the score split that is best on ``objective`` (None when only the
    float model is within budget); ``confirm_accuracy`` is the chosen point (and
    ``confirm_float`` the float model) on the confirm split, which chose nothing."""

    float_point: FrontPoint
    front: tuple[FrontPoint, ...]
    chosen: FrontPoint | None
    confirm_accuracy: Accuracy | None
    confirm_float: Accuracy | None
    budget_points: float
    objective: Objective
    metric: Agreement
    score_sample: SampleInfo
    confirm_sample: SampleInfo
    evaluated: int  # configurations measured in all
    finetune_epochs: int = 0
    # The chosen modes with the weights fine-tuned for them (``finetune_epochs`` > 0): the
    # model ``confirm_accuracy`` counted, so a caller can keep it. Not part of the JSON.
    finetuned_model: nn.Module | None = field(default=None, compare=False, repr=False)

    @property
    def confirm_within_budget(self) -> bool | None:
        """Whether the chosen point stays within the budget of float on the confirm split,
        which chose nothing (None without a chosen point or a confirm figure)."""
        if self.chosen is None or self.confirm_accuracy is None or self.confirm_float is None:
            return None
        return within_budget(self.confirm_accuracy, self.confirm_float, self.budget_points)

    @property
    def confirm_loss_points(self) -> float | None:
        """Percentage points the chosen point loses against float on the confirm split."""
        if self.confirm_accuracy is None or self.confirm_float is None:
            return None
        return 100 * (self.confirm_float.value - self.confirm_accuracy.value)

    @property
    def over_budget_points(self) -> float | None:
        """What the chosen point loses on the confirm split when that is more than the
        budget (the score split chose it, so its own figure is optimistic); None otherwise."""
        if self.confirm_within_budget is not False:
            return None
        return self.confirm_loss_points

    def to_json(self) -> dict[str, Any]:
        chosen = None
        if self.chosen is not None:
            chosen = self.chosen.to_json()
            confirm = self.confirm_accuracy
            chosen["confirm_accuracy"] = None if confirm is None else confirm.value
            chosen["confirm_accuracy_detail"] = None if confirm is None else confirm.to_json()
            chosen["confirm_within_budget"] = self.confirm_within_budget
        return {
            "float": self.float_point.to_json()
            | {
                "confirm_accuracy": None if self.confirm_float is None else self.confirm_float.value
            },
            "front": [point.to_json() for point in self.front],
            "chosen": chosen,
            "budget_points": self.budget_points,
            "objective": str(self.objective),
            "metric": str(self.metric),
            "score_sample": self.score_sample.to_json(),
            "confirm_sample": self.confirm_sample.to_json(),
            "evaluated": self.evaluated,
            "finetune_epochs": self.finetune_epochs,
        }
