"""Top-1 accuracy compared across configurations: every layer float vs the current modes on a
data set (the metrics panel) and on in-memory tensors (the report), scored per item so that two
configurations are compared on the same items (``PairedDifference``).

Every sample is drawn by ``xnorlab.data.sampling.stratified_sample`` (seeded, shuffled,
class-stratified) and every item is scored by the one top-1 rule
(``xnorlab.measure.evaluate.correct_items``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from xnorlab.binary.layers import LayerConfig
from xnorlab.binary.modes import Mode
from xnorlab.binary.surgery import float_mode, iter_binarizable, layer_configs, wrapped_layers
from xnorlab.common.errors import XnorlabError
from xnorlab.common.tasks import CancelFn, Cancelled, ProgressFn, no_progress
from xnorlab.data.sampling import SAMPLE_SEED, SampleInfo, stratified_sample
from xnorlab.measure.evaluate import correct_items, make_loader, model_device
from xnorlab.measure.intervals import Accuracy, PairedDifference
from xnorlab.measure.layers import detached_copy, layer_mode

Tick = Callable[[], None]

# ------------------------------------------------------------------------------ samples


def draw_sample(
    dataset: Dataset[Any], count: int | None, seed: int = SAMPLE_SEED
) -> tuple[Dataset[Any], SampleInfo]:
    """``stratified_sample`` with a one-line error for an empty data set or a count < 1."""
    if count is not None and count < 1:
        raise XnorlabError(f"the sample size must be >= 1, got {count}")
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise XnorlabError("the data set has no items")
    return stratified_sample(dataset, count, seed)


def sample_tensors(
    dataset: Dataset[Any], count: int | None, seed: int = SAMPLE_SEED
) -> tuple[Tensor, Tensor, SampleInfo]:
    """A stratified sample of ``count`` items stacked as ``(inputs, labels, info)``."""
    sample, info = draw_sample(dataset, count, seed)
    items = [sample[i] for i in range(len(sample))]  # type: ignore[arg-type]
    inputs = torch.stack([torch.as_tensor(x, dtype=torch.float32) for x, _ in items])
    return inputs, torch.tensor([int(y) for _, y in items], dtype=torch.long), info


# ------------------------------------------------------------------ on a data set (app)


@dataclass(frozen=True)
class AccuracyReport:
    """Top-1 with every layer float and with the current modes on one stratified sample.

    ``comparison`` pairs the two on the same items (``None`` when the float figure was reused
    from a cache without its per-item scores, so nothing can be paired); ``float_correct`` is
    the float run's per-item score (in sample order) for such a cache.
    """

    float_accuracy: Accuracy
    current_accuracy: Accuracy
    comparison: PairedDifference | None
    sample: SampleInfo
    float_reused: bool  # the float figure was given by the caller (cached), not recomputed
    float_correct: tuple[bool, ...] = ()

    @property
    def float_top1(self) -> float:
        return self.float_accuracy.value

    @property
    def current_top1(self) -> float:
        return self.current_accuracy.value

    @property
    def samples(self) -> int:
        return self.current_accuracy.n

    @property
    def drop(self) -> float:
        """``float_top1 - current_top1`` (positive: binarization costs accuracy)."""
        return self.float_top1 - self.current_top1

    def text(self, class_names: Sequence[str] = ()) -> str:
        """Three lines: float, current (each with its interval) and the paired difference."""
        paired = self.comparison.text() if self.comparison else "not paired (float cached)"
        return (
            f"float   {self.float_accuracy.text()}\n"
            f"current {self.current_accuracy.text()}\n"
            f"cost of binarizing (float - current): {paired}\n"
            f"sample: {self.sample.text(class_names)}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "float": self.float_accuracy.to_json(),
            "current": self.current_accuracy.to_json(),
            "comparison": None if self.comparison is None else self.comparison.to_json(),
            "sample": self.sample.to_json(),
            "float_reused": self.float_reused,
        }


def dataset_correct(
    model: nn.Module, data: Dataset[Any], batch_size: int,
    progress: Callable[[float], None], should_cancel: CancelFn | None,
) -> np.ndarray:  # fmt: skip
    """Per-item top-1 correctness of ``model`` on ``data`` (in order, no grad, eval mode)."""
    size = len(data)  # type: ignore[arg-type]
    device = model_device(model)
    scores: list[np.ndarray] = []
    done = 0
    with torch.no_grad():
        for inputs, labels in make_loader(data, batch_size):
            if should_cancel is not None and should_cancel():
                raise Cancelled("accuracy evaluation cancelled")
            logits = model(inputs.to(device)).float().cpu()
            scores.append(correct_items(logits, labels.long()).numpy())
            done += len(labels)
            progress(done / size)
    return np.concatenate(scores) if scores else np.zeros(0, dtype=bool)


def compare_accuracy(
    model: nn.Module,
    dataset: Dataset[Any],
    class_names: list[str] | None = None,
    *,
    max_samples: int | None = None,
    float_top1: float | None = None,
    float_correct: Sequence[bool] | None = None,
    seed: int = SAMPLE_SEED,
    batch_size: int = 256,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
) -> AccuracyReport:
    """Top-1 on a stratified sample of ``max_samples`` items (None: every item): all-float vs
    current modes, paired on the same items.

    Works on a detached copy in eval mode. Pass the cached ``float_correct`` of an earlier
    report (same weights, sample and seed) to skip the float pass and still pair; a cached
    ``float_top1`` alone also skips it, but then nothing is paired. When no layer is binarized
    the current pass is skipped too (the scores are equal by definition). ``class_names`` is
    accepted for the callers' symmetry with ``evaluate``; the score needs only the labels.
    """
    del class_names
    report = progress or no_progress
    data, info = draw_sample(dataset, max_samples, seed)
    work = detached_copy(model).eval()
    binarized = any(layer_mode(m) is not Mode.FLOAT for _, m in iter_binarizable(work))
    reused = float_correct is not None or float_top1 is not None
    passes = int(not reused) + int(binarized)
    done = [0]

    def step(label: str) -> Callable[[float], None]:
        base = done[0]
        return lambda f: report((base + f) / max(passes, 1), f"accuracy ({label})")

    floats: np.ndarray | None = None
    if float_correct is not None:
        floats = np.asarray(float_correct, dtype=bool)
        if len(floats) != info.count:
            raise XnorlabError(f"cached float scores cover {len(floats)} items, not {info.count}")
    elif float_top1 is None:
        with float_mode(work):
            floats = dataset_correct(work, data, batch_size, step("float"), should_cancel)
        done[0] += 1
    current = floats
    if binarized or floats is None:
        current = dataset_correct(work, data, batch_size, step("current"), should_cancel)
    assert current is not None
    report(1.0, "accuracy measured")
    current_acc = Accuracy(int(current.sum()), len(current))
    if floats is None:  # only a cached top-1: no items to pair
        hits = round(float(float_top1 or 0.0) * info.count)
        return AccuracyReport(Accuracy(hits, info.count), current_acc, None, info, True)
    comparison = PairedDifference.from_correct(floats.tolist(), current.tolist())
    return AccuracyReport(comparison.baseline, current_acc, comparison, info, reused,
                          tuple(bool(v) for v in floats))  # fmt: skip


# -------------------------------------------------------------- on tensors (the report)


def tensor_correct(
    model: nn.Module, inputs: Tensor, labels: Tensor, batch_size: int, tick: Tick
) -> np.ndarray:
    """Per-item top-1 correctness of ``model`` on ``inputs`` (batches, no grad); ``tick()``
    after each batch."""
    scores: list[np.ndarray] = []
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            logits = model(inputs[start : start + batch_size])
            scores.append(correct_items(logits, labels[start : start + batch_size]).numpy())
            tick()
    return np.concatenate(scores) if scores else np.zeros(0, dtype=bool)


def tensor_top1(
    model: nn.Module, inputs: Tensor, labels: Tensor, batch_size: int, tick: Tick
) -> Accuracy:
    """Top-1 of ``model`` on ``inputs`` (in batches, no grad); ``tick()`` after each batch."""
    correct = tensor_correct(model, inputs, labels, batch_size, tick)
    return Accuracy(hits=int(correct.sum()), n=len(inputs))


def only_layer_configs(model: nn.Module, name: str, mode: Mode) -> dict[str, LayerConfig]:
    """Configs with every wrapper float except ``name``, which gets ``mode``."""
    return {
        other: layer.config.updated(mode=mode if other == name else Mode.FLOAT)
        for other, layer in wrapped_layers(model).items()
    }


def restored_layer_configs(model: nn.Module, name: str) -> dict[str, LayerConfig]:
    """Configs with layer ``name`` float and every other wrapper as configured."""
    layer = wrapped_layers(model)[name]
    return {name: layer.config.updated(mode=Mode.FLOAT)}


def alone_mode(mode: Mode) -> Mode:
    """The mode a layer gets when binarized alone: its own, or XNOR for a float layer."""
    return mode if mode is not Mode.FLOAT else Mode.XNOR


def layer_alone_top1(
    model: nn.Module, name: str, mode: Mode, inputs: Tensor, labels: Tensor, batch_size: int,
    tick: Tick,
) -> Accuracy:  # fmt: skip
    """Top-1 with only layer ``name`` binarized (in ``mode``); the configs are restored."""
    with layer_configs(model, only_layer_configs(model, name, mode)):
        return tensor_top1(model, inputs, labels, batch_size, tick)
