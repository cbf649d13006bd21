"""How a prediction is scored (the one top-1 rule) and the evaluation of a model on a data set:
top-1, top-5, per-class accuracy, confusion matrix.

``evaluate(model, dataset)`` runs the model in eval mode without gradients (so the native
engine can be used when a layer's backend asks for it) and restores the model's train/eval
state afterwards. ``confusion[true][predicted]`` counts samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from xnorlab.common.errors import XnorlabError
from xnorlab.common.tasks import CancelFn, ProgressFn


def correct_items(logits: Tensor, labels: Tensor) -> Tensor:
    """The top-1 rule: row ``i`` is right when its largest logit is at ``labels[i]`` (bool)."""
    return logits.argmax(dim=1) == labels


def top1_correct(logits: Tensor, labels: Tensor) -> int:
    """How many rows of ``logits`` have their largest value at the row's label."""
    return int(correct_items(logits, labels).sum())


@dataclass
class EvalResult:
    """Accuracies in ``[0, 1]``; ``complete`` is False when cancelled part-way."""

    top1: float
    top5: float
    loss: float
    count: int
    per_class: dict[str, float]
    confusion: list[list[int]]
    class_names: list[str] = field(default_factory=list)
    complete: bool = True

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return {
            "top1": self.top1,
            "top5": self.top5,
            "loss": self.loss,
            "count": self.count,
            "per_class": self.per_class,
            "confusion": self.confusion,
            "class_names": self.class_names,
            "complete": self.complete,
        }


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``cuda`` when available (or asked for), else ``cpu``."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def make_loader(
    dataset: Dataset[Any],
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
) -> DataLoader[Any]:
    """A single-process DataLoader (workers would fight the GUI and the 2-core budget)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)


def _check_logits(logits: Tensor, num_classes: int) -> None:
    if logits.dim() != 2 or logits.shape[1] != num_classes:
        raise XnorlabError(
            f"the model outputs shape {tuple(logits.shape)}, expected (batch, {num_classes}) "
            f"for {num_classes} classes"
        )


class _Tally:
    """Running counts for top-1/top-k accuracy, loss and the confusion matrix."""

    def __init__(self, num_classes: int, topk: int) -> None:
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
        self.topk = max(1, min(topk, num_classes))
        self.topk_hits = 0
        self.correct = 0
        self.loss_sum = 0.0
        self.count = 0

    def add(self, logits: Tensor, labels: Tensor) -> None:
        self.loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
        self.correct += top1_correct(logits, labels)
        predicted = logits.argmax(dim=1)
        flat = labels * self.confusion.shape[0] + predicted
        self.confusion += torch.bincount(flat, minlength=self.confusion.numel()).reshape(
            self.confusion.shape
        )
        best = logits.topk(self.topk, dim=1).indices
        self.topk_hits += int((best == labels[:, None]).any(dim=1).sum())
        self.count += int(labels.numel())

    def result(self, names: list[str], complete: bool) -> EvalResult:
        total = max(self.count, 1)
        correct = self.confusion.diag()
        per_row = self.confusion.sum(dim=1)
        per_class = {
            name: float(correct[i]) / float(per_row[i]) if int(per_row[i]) else float("nan")
            for i, name in enumerate(names)
        }
        return EvalResult(
            top1=self.correct / total,
            top5=self.topk_hits / total,
            loss=self.loss_sum / total,
            count=self.count,
            per_class=per_class,
            confusion=self.confusion.tolist(),
            class_names=names,
            complete=complete,
        )


def evaluate(
    model: nn.Module,
    dataset: Dataset[Any],
    class_names: Sequence[str] | None = None,
    batch_size: int = 256,
    topk: int = 5,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
    device: str | torch.device | None = None,
) -> EvalResult:
    """Top-1, top-``topk``, per-class accuracy and confusion matrix of ``model`` on ``dataset``.

    ``topk`` is capped at the number of classes. ``progress(fraction, message, metrics)`` is
    called after every batch; ``should_cancel()`` stops early (``complete=False``).
    """
    size = len(dataset)  # type: ignore[arg-type]
    if size == 0:
        raise XnorlabError("the data set is empty: nothing to evaluate")
    names = list(class_names) if class_names else [str(i) for i in range(_infer_classes(model))]
    target = pick_device(device) if device is not None else model_device(model)
    tally = _Tally(len(names), topk)
    was_training = model.training
    model.eval()
    complete = True
    try:
        with torch.no_grad():
            for inputs, labels in make_loader(dataset, batch_size):
                if should_cancel is not None and should_cancel():
                    complete = False
                    break
                logits = model(inputs.to(target)).float().cpu()
                _check_logits(logits, len(names))
                tally.add(logits, labels.long())
                if progress is not None:
                    top1 = tally.correct / tally.count
                    progress(tally.count / size, f"evaluated {tally.count}/{size}", {"top1": top1})
    finally:
        model.train(was_training)
    return tally.result(names, complete)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameter-free model)."""
    first = next(iter(model.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


def _infer_classes(model: nn.Module) -> int:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise XnorlabError("cannot tell the number of classes: pass class_names")
    return int(linears[-1].out_features)
