"""Data sets -> report tensors (calibration from train, validation from val)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from xnorlab.common.errors import XnorlabError
from xnorlab.report.data import (
    MAX_CALIBRATION_BYTES,
    default_calibration,
    report_data_from_bundle,
    synthetic_report_data,
)


@dataclass
class _Bundle:
    name: str
    train: Dataset[tuple[torch.Tensor, ...]]
    val: Dataset[tuple[torch.Tensor, ...]]
    input_shape: tuple[int, int, int] = (1, 4, 4)


def _rows(sample: torch.Tensor, source: torch.Tensor) -> list[int]:
    """Which rows of ``source`` the sample's items are."""
    flat = source.reshape(len(source), -1)
    return [int((flat == item.reshape(1, -1)).all(dim=1).nonzero()[0]) for item in sample]


def test_bundle_gives_stratified_samples_of_train_and_val() -> None:
    train = TensorDataset(torch.randn(50, 1, 4, 4), torch.zeros(50, dtype=torch.long))
    val = TensorDataset(torch.randn(30, 1, 4, 4), torch.arange(30) % 3)
    data = report_data_from_bundle(_Bundle("toy", train, val), calibration=8, limit=20)
    assert len(set(_rows(data.calibration, train.tensors[0]))) == 8
    assert data.val_inputs is not None and data.val_labels is not None
    rows = _rows(data.val_inputs, val.tensors[0])
    assert len(set(rows)) == 20 and data.val_labels.tolist() == [r % 3 for r in rows]
    assert data.validation_sample is not None and data.calibration_sample is not None
    assert sorted(data.validation_sample.per_class.values()) == [6, 7, 7]
    assert data.calibration_sample.count == 8
    assert data.name == "toy (val split)"
    # the default calibration size follows the input size
    assert len(report_data_from_bundle(_Bundle("toy", train, val)).calibration) == 32
    with pytest.raises(XnorlabError):
        report_data_from_bundle(
            _Bundle("toy", train, TensorDataset(torch.zeros(0, 1, 4, 4), torch.zeros(0)))
        )


def test_synthetic_data_is_seeded_and_sized_by_input() -> None:
    first, second = synthetic_report_data((3, 224, 224)), synthetic_report_data((3, 224, 224))
    assert torch.equal(first.calibration, second.calibration)
    assert len(first.calibration) == default_calibration((3, 224, 224)) == 4
    assert first.val_inputs is None
    assert default_calibration((1, 28, 28)) == 32
    with pytest.raises(XnorlabError):
        synthetic_report_data((1, 8, 8), 0)


def test_a_calibration_batch_too_large_for_memory_is_refused_before_allocating() -> None:
    most = MAX_CALIBRATION_BYTES // (4 * 3 * 224 * 224)
    assert len(synthetic_report_data((3, 224, 224), most).calibration) == most
    for shape, count in (((3, 224, 224), most + 1), ((1, 28, 28), 2**31)):
        with pytest.raises(XnorlabError, match=r"calibration batch of .* at most \d+ fit"):
            synthetic_report_data(shape, count)
    # from a data set, a count above the split's size asks for the split, which fits
    train = TensorDataset(torch.randn(50, 3, 224, 224), torch.arange(50) % 5)
    data = report_data_from_bundle(_Bundle("big", train, train), calibration=2**31, limit=10)
    assert len(data.calibration) == 50


def test_a_class_sorted_data_set_gives_balanced_samples() -> None:
    """Sorted by class (as mnist5k is), the first items would all be class 0."""
    labels = torch.arange(10).repeat_interleave(40)  # 400 items, 0 0 ... 9 9
    train = TensorDataset(torch.randn(400, 1, 4, 4), labels)
    val = TensorDataset(torch.randn(400, 1, 4, 4), labels.clone())
    data = report_data_from_bundle(_Bundle("sorted", train, val), calibration=20, limit=100)
    assert data.val_labels is not None
    assert torch.bincount(data.val_labels, minlength=10).tolist() == [10] * 10
    assert data.validation_sample is not None
    assert data.validation_sample.per_class == dict.fromkeys(range(10), 10)
    assert data.calibration_sample is not None
    assert data.calibration_sample.per_class == dict.fromkeys(range(10), 2)
    calibration_labels = labels[_rows(data.calibration, train.tensors[0])]
    assert torch.bincount(calibration_labels, minlength=10).tolist() == [2] * 10
