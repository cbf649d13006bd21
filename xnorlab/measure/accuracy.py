"""Top-1 accuracy compared across configurations: every layer float vs the current modes on a
data set (the metrics panel), on in-memory tensors, and with one layer binarized alone (the
report's sensitivity sweep).

Every figure is scored by ``xnorlab.measure.evaluate`` (``evaluate`` on a data set,
``top1_correct`` on tensors).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Subset

from xnorlab.binary.layers import LayerConfig
from xnorlab.binary.modes import Mode
from xnorlab.binary.surgery import float_mode, iter_binarizable, layer_configs, wrapped_layers
from xnorlab.common.errors import XnorlabError
from xnorlab.common.tasks import CancelFn, Cancelled, ProgressFn, no_progress
from xnorlab.measure.evaluate import evaluate, top1_correct
from xnorlab.measure.intervals import Accuracy
from xnorlab.measure.layers import detached_copy, layer_mode

Tick = Callable[[], None]

# ------------------------------------------------------------------ on a data set (app)


@dataclass(frozen=True)
class AccuracyReport:
    """Validation top-1 with every layer float and with the current modes (fractions)."""

    float_top1: float
    current_top1: float
    samples: int
    float_reused: bool  # float_top1 was given by the caller (cached), not recomputed

    @property
    def drop(self) -> float:
        """``float_top1 - current_top1`` (positive: binarization costs accuracy)."""
        return self.float_top1 - self.current_top1


def _first_items(dataset: Any, max_samples: int | None) -> Any:
    size = len(dataset)
    if max_samples is None or max_samples >= size:
        return dataset
    if max_samples < 1:
        raise XnorlabError(f"max_samples must be >= 1, got {max_samples}")
    return Subset(dataset, range(max_samples))


def _dataset_top1(
    model: nn.Module, data: Any, class_names: list[str] | None, batch_size: int,
    progress: Callable[[float], None], should_cancel: CancelFn | None,
) -> float:  # fmt: skip
    result = evaluate(
        model, data, class_names=class_names or None, batch_size=batch_size, topk=1,
        progress=lambda fraction, *_: progress(fraction), should_cancel=should_cancel,
    )  # fmt: skip
    if not result.complete:
        raise Cancelled("accuracy evaluation cancelled")
    return result.top1


def compare_accuracy(
    model: nn.Module,
    dataset: Any,
    class_names: list[str] | None = None,
    *,
    max_samples: int | None = None,
    float_top1: float | None = None,
    batch_size: int = 256,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
) -> AccuracyReport:
    """Top-1 on the first ``max_samples`` items of ``dataset``: all-float vs current modes.

    Works on a detached copy. Both numbers come from ``evaluate``. Pass a cached
    ``float_top1`` (same model weights and samples) to skip the float pass; when no layer is
    binarized the current pass is skipped too (the numbers are equal by definition).
    """
    report = progress or no_progress
    data = _first_items(dataset, max_samples)
    work = detached_copy(model)
    binarized = any(layer_mode(m) is not Mode.FLOAT for _, m in iter_binarizable(work))
    passes = int(float_top1 is None) + int(binarized)
    done = [0]

    def step(label: str) -> Callable[[float], None]:
        base = done[0]
        return lambda f: report((base + f) / max(passes, 1), f"accuracy ({label})")

    reused = float_top1 is not None
    if float_top1 is None:
        with float_mode(work):
            float_top1 = _dataset_top1(work, data, class_names, batch_size, step("float"),
                                       should_cancel)  # fmt: skip
        done[0] += 1
    current = float_top1
    if binarized:
        current = _dataset_top1(work, data, class_names, batch_size, step("current"),
                                should_cancel)  # fmt: skip
    return AccuracyReport(float_top1, current, len(data), reused)


# -------------------------------------------------------------- on tensors (the report)


def tensor_top1(
    model: nn.Module, inputs: Tensor, labels: Tensor, batch_size: int, tick: Tick
) -> Accuracy:
    """Top-1 of ``model`` on ``inputs`` (in batches, no grad); ``tick()`` after each batch."""
    correct = 0
    with torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            logits = model(inputs[start : start + batch_size])
            correct += top1_correct(logits, labels[start : start + batch_size])
            tick()
    return Accuracy(hits=correct, n=len(inputs))


def only_layer_configs(model: nn.Module, name: str, mode: Mode) -> dict[str, LayerConfig]:
    """Configs with every wrapper float except ``name``, which gets ``mode``."""
    return {
        other: layer.config.updated(mode=mode if other == name else Mode.FLOAT)
        for other, layer in wrapped_layers(model).items()
    }


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
