"""``train_copy`` trains a copy: the lab model is never changed."""

from __future__ import annotations

import pytest
import torch
from measure_support import binarized, labelled_data

from xnorlab.binary.surgery import current_modes
from xnorlab.common.tasks import Cancelled
from xnorlab.data.bundle import DatasetBundle
from xnorlab.data.images import Preprocessing
from xnorlab.train.lab_copy import train_copy
from xnorlab.train.training import TrainConfig


def test_train_copy_trains_a_copy_only() -> None:
    model = binarized("paper")
    prep = Preprocessing(channels=1, height=8, width=8, mean=(0.0,), std=(1.0,))
    bundle = DatasetBundle(
        "tiny", labelled_data(48), labelled_data(16), [str(i) for i in range(10)], prep
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = TrainConfig(epochs=1, batch_size=16, shift_px=0.0)
    outcome = train_copy(model, bundle, config)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    trained = outcome.model.state_dict()
    assert any(not torch.equal(before[k], trained[k]) for k in before)
    assert current_modes(outcome.model) == current_modes(model)
    assert outcome.result.card["epochs"] == 1
    with pytest.raises(Cancelled):
        train_copy(model, bundle, config, should_cancel=lambda: True)
