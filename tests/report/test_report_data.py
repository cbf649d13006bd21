"""Data sets -> report tensors (calibration from train, validation from val)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from xnorlab.common.errors import XnorlabError
from xnorlab.report.data import (
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


def test_bundle_gives_calibration_from_train_and_validation_from_val() -> None:
    train = TensorDataset(torch.randn(50, 1, 4, 4), torch.zeros(50, dtype=torch.long))
    val = TensorDataset(torch.randn(30, 1, 4, 4), torch.arange(30) % 3)
    data = report_data_from_bundle(_Bundle("toy", train, val), calibration=8, limit=20)
    assert torch.equal(data.calibration, train.tensors[0][:8])
    assert data.val_inputs is not None and torch.equal(data.val_inputs, val.tensors[0][:20])
    assert (
        data.val_labels is not None and data.val_labels.tolist() == (torch.arange(20) % 3).tolist()
    )
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
