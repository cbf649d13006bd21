"""An ensemble against one float network: accuracy, packed memory and engine latency of the
first k members for k = 1..K, and the two equal-budget comparisons (pure data, no printing).

* Accuracy: every member and every ensemble of the first k members (mean-softmax vote,
  ``models.ensemble``) on one seeded, stratified sample of held-out items that no member
  trained or chose on, each as an ``Accuracy`` (n, Wilson interval), and each ensemble paired
  with the float model on the same items (``PairedDifference``: interval and McNemar).
* Memory: ``measure.memory`` packed bytes of the first k members (binary weights at 1 bit).
* Latency: the first k members deployed through the engine (``runtime.deploy``) and the float
  model, batch 1, all timed in interleaved rounds in this one process
  (``measure.timing.interleaved_samples``), each k as a ``RatioEstimate`` of its time over
  the float model's (median of per-round ratios, interval).
* Equal budgets: the largest k whose packed memory is at most the float model's, and the
  largest k whose measured latency ratio (median) is at most 1, with that ensemble's accuracy
  against the float model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from xnorlab.common.errors import XnorlabError
from xnorlab.common.tasks import CancelFn, ProgressFn, check_cancel, no_progress
from xnorlab.data.sampling import SAMPLE_SEED, SampleInfo
from xnorlab.measure.accuracy import sample_tensors
from xnorlab.measure.evaluate import correct_items
from xnorlab.measure.intervals import Accuracy, PairedDifference
from xnorlab.measure.machine import engine_info, load_note
from xnorlab.measure.memory import model_memory
from xnorlab.measure.timing import RatioEstimate, RunPlan, Timing, interleaved_samples
from xnorlab.models.ensemble import BinaryEnsemble
from xnorlab.runtime.deploy import deploy

BATCH = 256  # items per forward when scoring
FLOAT = "float"


@dataclass(frozen=True)
class EnsemblePoint:
    """The ensemble of the first ``members`` members."""

    members: int
    accuracy: Accuracy
    versus_float: PairedDifference  # baseline: the float model; cost = float - ensemble
    packed_bytes: int
    latency: Timing  # batch 1, through the engine
    latency_ratio: RatioEstimate  # this ensemble's time / the float model's (> 1: slower)

    def to_json(self) -> dict[str, Any]:
        return {
            "members": self.members,
            "accuracy": self.accuracy.to_json(),
            "versus_float": self.versus_float.to_json(),
            "packed_bytes": self.packed_bytes,
            "latency_ms": _timing_json(self.latency),
            "latency_ratio": self.latency_ratio.to_json(),
        }


@dataclass(frozen=True)
class EnsembleEvaluation:
    """Members, first-k ensembles and the float model on the same held-out items."""

    member_accuracies: tuple[Accuracy, ...]
    points: tuple[EnsemblePoint, ...]  # k = 1..K
    float_accuracy: Accuracy
    float_packed_bytes: int
    float_latency: Timing
    sample: SampleInfo
    threads: int
    engine: str
    load: str | None  # the machine's load note when it was busy
    baseline: str = ""  # the float model's spec

    @property
    def within_memory(self) -> EnsemblePoint | None:
        """The largest ensemble whose packed memory is at most the float model's."""
        fitting = [p for p in self.points if p.packed_bytes <= self.float_packed_bytes]
        return fitting[-1] if fitting else None

    @property
    def within_latency(self) -> EnsemblePoint | None:
        """The largest ensemble measured no slower than the float model (ratio median <= 1)."""
        fitting = [p for p in self.points if p.latency_ratio.median <= 1.0]
        return fitting[-1] if fitting else None

    def to_json(self) -> dict[str, Any]:
        def chosen(point: EnsemblePoint | None) -> int | None:
            return None if point is None else point.members

        return {
            "baseline": self.baseline,
            "float": {
                "accuracy": self.float_accuracy.to_json(),
                "packed_bytes": self.float_packed_bytes,
                "latency_ms": _timing_json(self.float_latency),
            },
            "members": [a.to_json() for a in self.member_accuracies],
            "ensembles": [p.to_json() for p in self.points],
            "within_memory": chosen(self.within_memory),
            "within_latency": chosen(self.within_latency),
            "sample": self.sample.to_json(),
            "threads": self.threads,
            "engine": self.engine,
            "load": self.load,
        }


def _timing_json(timing: Timing) -> dict[str, float | int]:
    return {"median": timing.median_s * 1e3, "min": timing.min_s * 1e3,
            "max": timing.max_s * 1e3, "runs": timing.runs}  # fmt: skip


# ------------------------------------------------------------------------------ accuracy


def log_probabilities(model: nn.Module, inputs: Tensor) -> Tensor:
    """``log_softmax`` of ``model`` on ``inputs`` (eval mode, no grad, in batches)."""
    model.eval()
    rows = []
    with torch.no_grad():
        for start in range(0, len(inputs), BATCH):
            rows.append(torch.log_softmax(model(inputs[start : start + BATCH]).float(), dim=1))
    return torch.cat(rows) if rows else torch.zeros(0, 0)


def first_k_correct(member_logs: list[Tensor], labels: Tensor) -> list[np.ndarray]:
    """Per-item correctness of the mean-softmax vote of the first k members, k = 1..K:
    ``argmax_c log((1/k) sum_{i<k} p_i(c))`` (the ensemble's forward, ``models.ensemble``)."""
    stacked = torch.stack(member_logs)
    return [
        correct_items(torch.logsumexp(stacked[:k], dim=0) - math.log(k), labels).numpy()
        for k in range(1, len(member_logs) + 1)
    ]


@dataclass(frozen=True)
class AccuracyCurve:
    """Per-item scores on one sample: each member, each first-k ensemble, the float model."""

    members: tuple[Accuracy, ...]
    ensembles: tuple[PairedDifference, ...]  # k = 1..K, float vs the first k members
    float_accuracy: Accuracy
    sample: SampleInfo


def accuracy_curve(
    ensemble: BinaryEnsemble,
    float_model: nn.Module,
    held_out: Dataset[Any],
    count: int | None = None,
    seed: int = SAMPLE_SEED,
    tick: Callable[[], None] = lambda: None,
) -> AccuracyCurve:
    """Score members, first-k ensembles and ``float_model`` on one stratified sample of
    ``count`` items of ``held_out`` (None: all of them)."""
    inputs, labels, info = sample_tensors(held_out, count, seed)
    member_logs = []
    for member in ensemble.members:
        member_logs.append(log_probabilities(member, inputs))
        tick()
    floats = correct_items(log_probabilities(float_model, inputs), labels).numpy()
    tick()
    members = tuple(
        Accuracy(int(c.sum()), len(c))
        for c in (correct_items(logs, labels).numpy() for logs in member_logs)
    )
    pairs = tuple(
        PairedDifference.from_correct(floats.tolist(), c.tolist())
        for c in first_k_correct(member_logs, labels)
    )
    return AccuracyCurve(members, pairs, Accuracy(int(floats.sum()), len(floats)), info)


# ------------------------------------------------------------------------------- latency


@dataclass(frozen=True)
class LatencyCurve:
    """Batch-1 times of the float model and of the first k members through the engine."""

    float_latency: Timing
    ensembles: tuple[Timing, ...]
    ratios: tuple[RatioEstimate, ...]  # ensemble k / float


def latency_curve(
    ensemble: BinaryEnsemble,
    float_model: nn.Module,
    example: Tensor,
    plan: RunPlan,
    tick: Callable[[], None] = lambda: None,
) -> LatencyCurve:
    """Time ``float_model`` (torch) and each ``deploy(ensemble.first(k))`` on ``example`` (one
    input) in interleaved rounds, in this process with the current threads, without grad."""
    heads = {f"k{k}": deploy(ensemble.first(k)) for k in range(1, len(ensemble.members) + 1)}
    floating = float_model.eval()
    ops: dict[str, Any] = {FLOAT: (tick, lambda: floating(example))}
    for name, head in heads.items():
        ops[name] = (tick, lambda head=head: head(example))
    with torch.no_grad():
        samples = interleaved_samples(ops, plan)
    note = load_note()
    ratios = tuple(
        RatioEstimate.from_samples(samples[name], samples[FLOAT], note, block=plan.block)
        for name in heads
    )
    times = tuple(Timing.from_samples(samples[name]) for name in heads)
    return LatencyCurve(Timing.from_samples(samples[FLOAT]), times, ratios)


# 30+ rounds of 4 calls per op: on a shared machine a ratio's interval needs many rounds
LATENCY_PLAN = RunPlan(warmup=2, min_runs=120, max_runs=800, min_total_s=0.5, block=4)


def evaluate_ensemble(
    ensemble: BinaryEnsemble,
    float_model: nn.Module,
    held_out: Dataset[Any],
    *,
    count: int | None = None,
    seed: int = SAMPLE_SEED,
    plan: RunPlan = LATENCY_PLAN,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
    baseline: str = "",
) -> EnsembleEvaluation:
    """Accuracy, packed memory and engine latency of the first k members vs ``float_model``
    (module docstring; ``baseline`` names it). ``held_out`` must be items no member trained or
    chose on."""
    if len(held_out) == 0:  # type: ignore[arg-type]
        raise XnorlabError("the held-out split has no items")
    report = progress or no_progress
    steps, done = len(ensemble.members) + 1, [0]

    def tick() -> None:
        check_cancel(should_cancel, "ensemble evaluation")

    def scored() -> None:
        done[0] += 1
        report(0.5 * done[0] / steps, "scoring members on held-out items")
        tick()

    curve = accuracy_curve(ensemble, float_model, held_out, count, seed, scored)
    example, _, _ = sample_tensors(held_out, 1, seed)
    report(0.5, "timing the float model and the first k members (engine, batch 1)")
    latency = latency_curve(ensemble, float_model, example, plan, tick)
    report(1.0, "ensemble evaluated")
    points = tuple(
        EnsemblePoint(
            members=k,
            accuracy=pair.candidate,
            versus_float=pair,
            packed_bytes=model_memory(ensemble.first(k)).packed_bytes,
            latency=latency.ensembles[k - 1],
            latency_ratio=latency.ratios[k - 1],
        )
        for k, pair in enumerate(curve.ensembles, start=1)
    )
    return EnsembleEvaluation(
        member_accuracies=curve.members,
        points=points,
        float_accuracy=curve.float_accuracy,
        float_packed_bytes=model_memory(float_model).packed_bytes,
        float_latency=latency.float_latency,
        sample=curve.sample,
        threads=torch.get_num_threads(),
        engine=engine_info().description,
        load=load_note(),
        baseline=baseline,
    )
