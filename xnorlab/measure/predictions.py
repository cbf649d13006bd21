"""Top-k predictions of inputs, every layer float vs the current modes (the prediction panel).

Runs on a detached copy in eval mode under ``torch.no_grad``: the caller's model is not touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from xnorlab.binary.surgery import float_mode
from xnorlab.common.errors import XnorlabError
from xnorlab.common.tasks import CancelFn, check_cancel
from xnorlab.data.images import prepare_image
from xnorlab.measure.layers import detached_copy


@dataclass(frozen=True)
class TopK:
    """The ``k`` most probable classes of one input, most probable first."""

    indices: tuple[int, ...]
    labels: tuple[str, ...]
    probabilities: tuple[float, ...]  # softmax probabilities in [0, 1]


@dataclass(frozen=True)
class PredictionPair:
    """Top-k of one input with every layer float and with the current modes."""

    float_topk: TopK
    current_topk: TopK


@dataclass(frozen=True)
class FilePrediction:
    """One image file: the input exactly as the model sees it, the preprocessing steps that
    made it (``xnorlab.data.images.prepare_image``) and its two top-k lists."""

    path: str
    model_input: torch.Tensor  # (C, H, W), normalized
    pair: PredictionPair
    steps: tuple[str, ...] = ()


def _topk(probabilities: torch.Tensor, class_names: list[str], k: int) -> list[TopK]:
    values, indices = probabilities.topk(min(k, probabilities.shape[1]), dim=1)
    out = []
    for row_values, row_indices in zip(values.tolist(), indices.tolist(), strict=True):
        labels = tuple(
            class_names[i] if i < len(class_names) else f"class {i}" for i in row_indices
        )
        out.append(TopK(tuple(row_indices), labels, tuple(row_values)))
    return out


def _check_images(images: torch.Tensor, input_shape: tuple[int, ...] | None) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise XnorlabError("images must be a 4-D tensor (N, C, H, W)")
    if not images.is_floating_point():
        raise XnorlabError(f"images must be floating point, got {images.dtype}")
    if input_shape is not None and tuple(images.shape[1:]) != tuple(input_shape):
        raise XnorlabError(
            f"images have shape {tuple(images.shape[1:])}, the model expects {tuple(input_shape)}"
        )
    if not bool(torch.isfinite(images).all()):
        raise XnorlabError("images contain NaN or infinite values")


def compare_predictions(
    model: torch.nn.Module,
    images: torch.Tensor,
    class_names: list[str],
    *,
    k: int = 5,
    input_shape: tuple[int, ...] | None = None,
) -> list[PredictionPair]:
    """Softmax top-``k`` of each image of a preprocessed batch ``(N, C, H, W)``, every layer
    float vs the current modes."""
    if k < 1:
        raise XnorlabError(f"k must be >= 1, got {k}")
    _check_images(images, input_shape)
    work = detached_copy(model).eval()
    try:
        with torch.no_grad():
            with float_mode(work):
                float_probs = torch.softmax(work(images).float(), dim=1)
            current_probs = torch.softmax(work(images).float(), dim=1)
    except RuntimeError as exc:
        raise XnorlabError(f"the model cannot run on these inputs: {exc}") from None
    floats = _topk(float_probs, class_names, k)
    currents = _topk(current_probs, class_names, k)
    return [PredictionPair(f, c) for f, c in zip(floats, currents, strict=True)]


def predict_files(
    model: torch.nn.Module,
    paths: list[str],
    preprocessing: Any,
    class_names: list[str],
    *,
    k: int = 5,
    input_shape: tuple[int, ...] | None = None,
    should_cancel: CancelFn | None = None,
) -> list[FilePrediction]:
    """Load image files with the model's ``preprocessing`` and compare float vs current top-k.

    All files are decoded before anything is predicted: one unreadable file raises
    ``XnorlabError`` naming it (nothing is returned for the others).
    """
    if not paths:
        raise XnorlabError("no image files given")
    prepared = []
    for path in paths:
        check_cancel(should_cancel, "prediction")
        try:
            prepared.append(prepare_image(path, preprocessing))
        except XnorlabError as exc:
            name = Path(path).name
            raise XnorlabError(f"{name}: {exc}" if name not in str(exc) else str(exc)) from None
    batch = torch.stack([image.tensor for image in prepared])
    pairs = compare_predictions(model, batch, class_names, k=k, input_shape=input_shape)
    return [
        FilePrediction(str(path), image.tensor, pair, image.steps)
        for path, image, pair in zip(paths, prepared, pairs, strict=True)
    ]
