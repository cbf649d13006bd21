"""Fine-tuning the chosen configuration before it is confirmed ("binarize then recover"), with
the train room, on items that are neither in the score nor in the confirm split."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from torch import Tensor, nn
from torch.utils.data import Dataset

from xnorlab.binary.modes import Mode
from xnorlab.binary.surgery import copy_model, wrapped_layers
from xnorlab.common.tasks import CancelFn, ProgressFn
from xnorlab.data.bundle import DatasetBundle
from xnorlab.data.images import Preprocessing
from xnorlab.measure.front import SearchResult, modes_letters
from xnorlab.models.checkpoint import layer_settings
from xnorlab.models.loaded import LoadedModel
from xnorlab.train.lab_copy import train_copy
from xnorlab.train.training import TrainConfig

FINETUNE_LR = 2e-4  # a tenth of the demo recipe's: the weights are trained, the modes are new


def _preprocessing(input_shape: tuple[int, ...]) -> Preprocessing:
    """A neutral description of the inputs (identity mean/std): the bundle needs one, and
    nothing here converts images or writes a checkpoint that would store it."""
    if len(input_shape) == 3 and input_shape[0] in (1, 3):
        channels, height, width = input_shape
        return Preprocessing(channels, height, width, (0.0,) * channels, (1.0,) * channels)
    return Preprocessing()


def finetune_config(epochs: int, seed: int, input_shape: tuple[int, ...]) -> TrainConfig:
    """The demo recipe at ``FINETUNE_LR`` for ``epochs`` (last epoch kept, fixed in advance);
    the image augmentation only for image inputs ``(C, H, W)``."""
    config = TrainConfig(epochs=epochs, lr=FINETUNE_LR, seed=seed)
    if len(input_shape) != 3:
        config.shift_px, config.rotate_deg, config.scale = 0.0, 0.0, 0.0
    return config


def finetune_modes(
    model: nn.Module,
    modes: Mapping[str, Mode],
    train_items: Dataset[Any],
    monitor_items: Dataset[Any],
    num_classes: int,
    config: TrainConfig,
    input_shape: tuple[int, ...],
    *,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
) -> nn.Module:
    """A trained copy of ``model`` in ``modes`` (``model`` is not touched): ``config.epochs``
    epochs on ``train_items``; ``monitor_items`` are only watched (the last epoch is kept
    whatever they say). Raises ``Cancelled`` when cancelled."""
    work = copy_model(model, share_tensors=False)
    for name, layer in wrapped_layers(work).items():
        layer.config = layer.config.updated(mode=modes.get(name, Mode.FLOAT))
    bundle = DatasetBundle(
        name="search fine-tune",
        train=train_items,
        val=monitor_items,
        class_names=[str(i) for i in range(num_classes)],
        preprocessing=_preprocessing(input_shape),
    )
    outcome = train_copy(work, bundle, config, progress=progress, should_cancel=should_cancel)
    return outcome.model.eval()


def num_outputs(model: nn.Module, example: Tensor) -> int:
    """Classes the model predicts: the width of its output for one ``example``."""
    return int(model(example[:1]).shape[1])


def finetuned_meta(
    loaded: LoadedModel, result: SearchResult, model: nn.Module, data: str
) -> dict[str, Any]:
    """What a checkpoint of a search's fine-tuned ``model`` records besides its weights, as
    ``xnorlab train --out`` does (architecture, classes, preprocessing, modes, layer
    settings), with a card saying it came from a search: budget, objective, modes, the
    fine-tune's epochs, lr, seed and recipe, both splits and the confirm figures."""
    modes, configs = layer_settings(model)
    seed = result.score_sample.seed  # the search's seed: its splits' and its fine-tune's
    config = finetune_config(result.finetune_epochs, seed, tuple(loaded.input_shape))
    confirm, confirm_float = result.confirm_accuracy, result.confirm_float
    card = {
        "trained": True,
        "source": "xnorlab search --finetune-epochs",
        "search": {
            "budget_points": result.budget_points,
            "objective": str(result.objective),
            "metric": str(result.metric),
            "modes": modes,
            "modes_letters": modes_letters(modes),
            "finetune_epochs": result.finetune_epochs,
            "lr": config.lr,
            "seed": seed,
            "data": data,
            "score_sample": result.score_sample.to_json(),
            "confirm_sample": result.confirm_sample.to_json(),
            "confirm_accuracy": None if confirm is None else confirm.to_json(),
            "confirm_float": None if confirm_float is None else confirm_float.to_json(),
            "confirm_within_budget": result.confirm_within_budget,
        },
        "recipe": {**asdict(config), "keep": str(config.keep)},
        "seed": seed,
        "epochs": result.finetune_epochs,
        "kept": f"last epoch of {result.finetune_epochs}, fixed in advance",
        "modes": modes,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    meta: dict[str, Any] = {
        "arch": loaded.arch,
        "num_classes": len(loaded.class_names) or None,
        "class_names": list(loaded.class_names),
        "default_data": data,
        "modes": modes,
        "layer_config": configs,
        "card": card,
    }
    if loaded.preprocessing is not None:
        meta["preprocessing"] = loaded.preprocessing.to_json()
    return meta
