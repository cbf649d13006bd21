"""The bundled calibration photos: real images to feed a model when no data set is open.

Eight public-domain / CC0 photos ship inside the package (``xnorlab/resources/calibration``,
sources and licences in its ``README.md``; built once by ``scripts/build_calibration_photos.py``
from scikit-image's sample data, which is never imported at run time). They are *unlabelled*:
they stand in for real inputs when the app or a report needs activation statistics (input
histograms, sign-flip rates, K maps, float-vs-binarized errors) and no data set is open, e.g.
for a torchvision model without ImageNet. They are never used to measure accuracy; the
search (``xnorlab search --data photos``) counts on seeded crops of them (``PhotoCrops``)
only how often a configuration agrees with the float model's top-1.

``calibration_batch(input_shape, preprocessing)`` decodes them with Pillow and turns them into
the model's input with the same path as a dropped image (``xnorlab.data.images``): centre crop
to ``H x W`` (the shorter side scaled to fit), luminance for 1-channel models, then
``(x - mean) / std`` per channel. The mean/std are the model's own when its preprocessing has
the same shape, else ImageNet's for 3 channels and MNIST's (the demo LeNet's) for 1 channel.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from xnorlab.common.errors import XnorlabError
from xnorlab.data.images import (
    IMAGENET_PREPROCESSING,
    MNIST_PREPROCESSING,
    Preprocessing,
    image_to_array,
    pixels_to_input,
)
from xnorlab.data.sampling import NO_LABEL, SAMPLE_SEED

PHOTO_FILES = (
    "astronaut.jpg",
    "chelsea.jpg",
    "coffee.jpg",
    "rocket.jpg",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "camera.jpg",
    "brick.jpg",
)
PHOTO_COUNT = len(PHOTO_FILES)
SOURCE_NAME = "bundled calibration photos"
_lock = threading.Lock()
_batches: dict[Preprocessing, Tensor] = {}


def calibration_dir() -> Path:
    """The folder of the installed package that holds the photos."""
    return Path(__file__).resolve().parent.parent / "resources" / "calibration"


def photo_paths() -> list[Path]:
    """Paths of the bundled photos, in a fixed order; raises when one is missing."""
    folder = calibration_dir()
    paths = [folder / name for name in PHOTO_FILES]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise XnorlabError(
            f"the calibration photos {', '.join(missing)} are missing from this installation "
            f"({folder})"
        )
    return paths


def describe(count: int = PHOTO_COUNT) -> str:
    """How the views and reports name these inputs, e.g. ``bundled calibration photos (8,
    unlabelled)`` or ``(1 of 8, unlabelled)`` when fewer are used."""
    used = f"{count}" if count >= PHOTO_COUNT else f"{count} of {PHOTO_COUNT}"
    return f"{SOURCE_NAME} ({used}, unlabelled)"


def calibration_preprocessing(
    input_shape: tuple[int, ...], preprocessing: Preprocessing | None = None
) -> Preprocessing:
    """The preprocessing that turns a photo into one ``(C, H, W)`` input of the model.

    Always a centre crop (photos are not ink drawings: no digit re-layout, no inversion);
    mean/std from ``preprocessing`` when its shape is ``input_shape``, else ImageNet's
    (C = 3) or MNIST's (C = 1). Raises ``XnorlabError`` for any other shape.
    """
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or shape[0] not in (1, 3) or min(shape) < 1:
        raise XnorlabError(
            f"the bundled calibration photos need an image input (C, H, W) with C = 1 or 3; "
            f"this model expects {tuple(input_shape)}"
        )
    channels, height, width = shape
    if preprocessing is not None and preprocessing.input_shape == shape:
        base = preprocessing
    else:
        base = IMAGENET_PREPROCESSING if channels == 3 else MNIST_PREPROCESSING
    return replace(
        base, channels=channels, height=height, width=width, resize="crop", light_on_dark=False
    )


@cache
def _photo_pixels() -> tuple[Tensor, ...]:
    """Each photo as ``(3, H, W)`` float32 RGB in ``[0, 1]``, decoded once per process."""
    arrays = [image_to_array(path).astype(np.float32) for path in photo_paths()]
    return tuple(torch.from_numpy(a).permute(2, 0, 1).contiguous() for a in arrays)


def _converted(prep: Preprocessing) -> Tensor:
    with _lock:
        batch = _batches.get(prep)
    if batch is None:
        batch = torch.stack([pixels_to_input(rgb, prep) for rgb in _photo_pixels()])
        with _lock:
            _batches.clear()  # one model at a time: keep only the latest shape
            _batches[prep] = batch
    return batch


def calibration_batch(
    input_shape: tuple[int, ...],
    preprocessing: Preprocessing | None = None,
    count: int | None = None,
) -> Tensor:
    """The first ``count`` (default all 8) photos as a normalized ``(N, C, H, W)`` float32 batch.

    Unlabelled: for activation statistics only, never for accuracy. Thread-safe (the GUI
    calls it in workers); the result is a fresh tensor the caller may change.
    """
    if count is not None and count < 1:
        raise XnorlabError(f"calibration photo count must be >= 1, got {count}")
    prep = calibration_preprocessing(input_shape, preprocessing)
    used = PHOTO_COUNT if count is None else min(count, PHOTO_COUNT)
    return _converted(prep)[:used].clone()


CROPS_PER_PHOTO = 16
CROP_SHARE = (0.5, 1.0)  # side of a crop as a share of the photo's shorter side


def _random_crop(rgb: Tensor, rng: np.random.Generator) -> Tensor:
    """A square crop of ``rgb`` (side drawn in ``CROP_SHARE`` of the shorter side, position
    uniform), mirrored left-right with probability 1/2."""
    height, width = rgb.shape[1:]
    side = max(1, round(rng.uniform(*CROP_SHARE) * min(height, width)))
    top = int(rng.integers(0, height - side + 1))
    left = int(rng.integers(0, width - side + 1))
    crop = rgb[:, top : top + side, left : left + side]
    return crop.flip(2) if rng.random() < 0.5 else crop


class PhotoCrops(Dataset[tuple[Tensor, int]]):
    """``per_photo`` seeded random crops of each bundled photo as model inputs, photo by
    photo, every item labelled ``NO_LABEL``: more unlabelled inputs than the 8 photos for a
    statistic over items (crops of one photo are alike, so an interval over crops is
    optimistic)."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        preprocessing: Preprocessing | None = None,
        per_photo: int = CROPS_PER_PHOTO,
        seed: int = SAMPLE_SEED,
    ) -> None:
        if per_photo < 1:
            raise XnorlabError(f"crops per photo must be >= 1, got {per_photo}")
        prep = calibration_preprocessing(input_shape, preprocessing)
        rng = np.random.default_rng(seed)
        crops = [
            pixels_to_input(_random_crop(rgb, rng), prep)
            for rgb in _photo_pixels()
            for _ in range(per_photo)
        ]
        self.inputs = torch.stack(crops)
        self.labels = np.full(len(crops), NO_LABEL, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.inputs[index], NO_LABEL
