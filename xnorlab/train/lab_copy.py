"""Training a private copy of a model, as the app does while the original stays usable."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from xnorlab.binary.surgery import copy_model
from xnorlab.common.tasks import CancelFn, Cancelled, ProgressFn, no_progress
from xnorlab.data.bundle import DatasetBundle
from xnorlab.models.checkpoint import layer_settings
from xnorlab.train.training import TrainConfig, TrainResult, build_card, train


@dataclass(frozen=True)
class TrainingOutcome:
    """A trained private copy of the model and the run's record."""

    model: nn.Module
    result: TrainResult
    from_scratch: bool


def _reset_weights(model: nn.Module) -> None:
    for module in model.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()


def train_copy(
    model: nn.Module,
    bundle: DatasetBundle,
    config: TrainConfig | None,
    *,
    from_scratch: bool = False,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
) -> TrainingOutcome:
    """Train (``from_scratch``) or fine-tune a deep copy of ``model`` in its current modes.

    The caller's model is never touched, so it stays usable while this runs in a worker.
    ``progress(fraction, message, payload)``: ``payload = {"step": {...}, "epochs": [...]}``
    carries the latest step metrics and *every* finished epoch so far, so a dropped
    (throttled) call loses nothing.
    """
    work = copy_model(model, share_tensors=False)
    if from_scratch:
        _reset_weights(work)
    epochs: list[dict[str, Any]] = []
    report = progress or no_progress

    def relay(fraction: float, message: str = "", metrics: Any = None) -> None:
        metrics = dict(metrics or {})
        if "val_acc" in metrics:
            epochs.append(metrics)
        report(fraction, message, {"step": metrics, "epochs": list(epochs)})

    config = config or TrainConfig()
    result = train(work, bundle, config, progress=relay, should_cancel=should_cancel)
    if result.cancelled:
        raise Cancelled("training cancelled")
    if not result.card:
        result.card = build_card(config, result, bundle, layer_settings(work)[0])
        result.card["from_scratch"] = from_scratch
    return TrainingOutcome(work, result, from_scratch)
