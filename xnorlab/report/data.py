"""Turn a data set (or nothing) into the ``ReportData`` tensors a report needs.

For the CLI and the GUI's File > Export report: a calibration batch from the train split and
validation tensors from the val split, each a seeded class-stratified sample
(``xnorlab.measure.accuracy.sample_tensors``) whose ``SampleInfo`` the report shows. Without data: the bundled calibration photos
(``xnorlab.data.calibration``, unlabelled, so no accuracy) for models that take 1- or 3-channel
images, else seeded random inputs; the report's data name says which.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from xnorlab.common.errors import XnorlabError
from xnorlab.data import calibration
from xnorlab.data.images import Preprocessing
from xnorlab.data.sampling import SampleInfo
from xnorlab.measure.accuracy import sample_tensors
from xnorlab.report.model import ReportData

SYNTHETIC_NAME = "none (random normal calibration inputs, no accuracy)"
PHOTOS_NAME = "none: {photos} as calibration inputs, no accuracy"


def default_calibration(input_shape: tuple[int, ...]) -> int:
    """32 samples for inputs up to 3x64x64, else 4 (the statistics are per value, not image)."""
    return 32 if math.prod(input_shape) <= 3 * 64 * 64 else 4


# A calibration batch runs as one forward with every layer's statistics hooked, so its input
# is bounded: a count typed by mistake must be refused, not tried until memory runs out.
MAX_CALIBRATION_BYTES = 256 << 20


def checked_calibration(input_shape: tuple[int, ...], calibration: int | None) -> int:
    """The calibration batch size: ``calibration``, or the default for ``input_shape``; one
    error when it is below 1 or its float32 inputs would exceed ``MAX_CALIBRATION_BYTES``."""
    count = default_calibration(input_shape) if calibration is None else calibration
    if count < 1:
        raise XnorlabError(f"calibration batch size must be >= 1, got {count}")
    image_bytes = 4 * math.prod(input_shape)
    most = max(1, MAX_CALIBRATION_BYTES // image_bytes)
    if count > most:
        shape = "x".join(map(str, input_shape))
        raise XnorlabError(
            f"a calibration batch of {count} inputs of {shape} would take "
            f"{count * image_bytes / (1 << 20):.0f} MiB; at most {most} fit in the "
            f"{MAX_CALIBRATION_BYTES >> 20} MiB a calibration batch may take"
        )
    return count


def sample_items(dataset: Any, count: int) -> tuple[torch.Tensor, torch.Tensor, SampleInfo]:
    """A seeded class-stratified sample of ``min(count, len(dataset))`` items as two tensors,
    and what it holds."""
    if count < 1 or len(dataset) == 0:
        raise XnorlabError("the data set has no samples")
    return sample_tensors(dataset, min(count, len(dataset)))


def stack_items(dataset: Any, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``sample_items`` without the ``SampleInfo``."""
    inputs, labels, _ = sample_items(dataset, count)
    return inputs, labels


def synthetic_report_data(
    input_shape: tuple[int, ...], calibration: int | None = None
) -> ReportData:
    """Seeded standard-normal calibration inputs, no validation data (no accuracy)."""
    count = checked_calibration(input_shape, calibration)
    generator = torch.Generator().manual_seed(0)
    return ReportData(SYNTHETIC_NAME, torch.randn((count, *input_shape), generator=generator))


def photo_report_data(
    input_shape: tuple[int, ...],
    preprocessing: Preprocessing | None = None,
    calibration_count: int | None = None,
) -> ReportData:
    """The bundled calibration photos as the calibration batch (at most 8), no validation data.

    Raises ``XnorlabError`` when the photos cannot feed ``input_shape`` (not ``(1|3, H, W)``).
    """
    count = default_calibration(input_shape) if calibration_count is None else calibration_count
    if count < 1:
        raise XnorlabError(f"calibration batch size must be >= 1, got {count}")
    batch = calibration.calibration_batch(input_shape, preprocessing, count)
    return ReportData(PHOTOS_NAME.format(photos=calibration.describe(len(batch))), batch)


def unlabelled_report_data(
    input_shape: tuple[int, ...],
    preprocessing: Preprocessing | None = None,
    calibration_count: int | None = None,
) -> ReportData:
    """Report data without a data set: the bundled photos when they fit, else random inputs.

    The random fallback's name says why the photos were not used (the input shape).
    """
    try:
        calibration.calibration_preprocessing(input_shape, preprocessing)
    except XnorlabError:
        data = synthetic_report_data(input_shape, calibration_count)
        why = f"the bundled photos need a (1 or 3, H, W) image input, not {tuple(input_shape)}"
        return ReportData(f"{SYNTHETIC_NAME[:-1]}; {why})", data.calibration)
    return photo_report_data(input_shape, preprocessing, calibration_count)


def report_data_from_bundle(
    bundle: Any, calibration: int | None = None, limit: int = 1000
) -> ReportData:
    """Calibration batch from ``bundle.train``, up to ``limit`` validation items from ``.val``,
    both class-stratified samples (seed ``SAMPLE_SEED``).

    ``bundle`` is a ``xnorlab.data.datasets.DatasetBundle`` (anything with ``name``, ``train``,
    ``val`` and ``input_shape``).
    """
    available = max(1, len(bundle.train))  # a sample never takes more than the split holds
    asked = None if calibration is None else min(calibration, available)
    count = checked_calibration(tuple(bundle.input_shape), asked)
    if limit < 1:
        raise XnorlabError(f"validation limit must be >= 1, got {limit}")
    calibration_inputs, _, calibration_info = sample_items(bundle.train, count)
    val_inputs, val_labels, val_info = sample_items(bundle.val, limit)
    return ReportData(f"{bundle.name} (val split)", calibration_inputs, val_inputs, val_labels,
                      calibration_info, val_info)  # fmt: skip
