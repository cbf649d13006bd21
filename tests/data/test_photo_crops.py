"""Seeded crops of the bundled photos: unlabelled items in the model's input shape."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xnorlab.common.errors import XnorlabError
from xnorlab.data.calibration import PHOTO_COUNT, PhotoCrops
from xnorlab.data.sampling import NO_LABEL, dataset_labels, is_unlabelled


def test_crops_are_unlabelled_inputs_of_the_model_shape_and_seeded() -> None:
    crops = PhotoCrops((3, 32, 32), per_photo=3, seed=1)
    assert len(crops) == 3 * PHOTO_COUNT
    x, label = crops[4]
    assert x.shape == (3, 32, 32) and label == NO_LABEL
    assert is_unlabelled(dataset_labels(crops))
    assert torch.equal(PhotoCrops((3, 32, 32), per_photo=3, seed=1).inputs, crops.inputs)
    assert not torch.equal(PhotoCrops((3, 32, 32), per_photo=3, seed=2).inputs, crops.inputs)
    assert not torch.equal(crops[0][0], crops[1][0])  # two crops of one photo differ


def test_labels_decide_unlabelled_only_when_every_item_lacks_one() -> None:
    assert is_unlabelled(np.array([-1, -1]))
    assert not is_unlabelled(np.array([-1, 0]))
    assert not is_unlabelled(np.array([], dtype=np.int64))


def test_no_crops_is_an_error() -> None:
    with pytest.raises(XnorlabError, match="crops per photo"):
        PhotoCrops((1, 28, 28), per_photo=0)
