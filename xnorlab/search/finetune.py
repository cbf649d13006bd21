"""Fine-tuning the chosen configuration before it is confirmed ("binarize then recover"), with
the train room, on items that are neither in the score nor in the confirm split."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn
from torch.utils.data import Dataset

from xnorlab.binary.modes import Mode
from xnorlab.binary.surgery import copy_model, wrapped_layers
from xnorlab.common.tasks import CancelFn, ProgressFn
from xnorlab.data.bundle import DatasetBundle
from xnorlab.data.images import Preprocessing
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
