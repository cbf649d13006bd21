"""The bundled calibration photos: shipped files, batch conversion, session inputs, report data."""

from __future__ import annotations

import ast
import sys
from importlib import resources
from pathlib import Path

import pytest
import torch
from torch import nn

from xnorlab.common.errors import XnorlabError
from xnorlab.data import calibration
from xnorlab.data.calibration import PHOTO_COUNT, PHOTO_FILES, calibration_batch, photo_paths
from xnorlab.data.datasets import CIFAR10_PREPROCESSING
from xnorlab.data.images import (
    IMAGENET_PREPROCESSING,
    MNIST_PREPROCESSING,
    image_to_array,
    pixels_to_input,
)
from xnorlab.lab.session import InputKind, LabSession
from xnorlab.models.loaded import LoadedModel
from xnorlab.report.data import SYNTHETIC_NAME, unlabelled_report_data

LUMA = torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)


def test_the_photos_ship_inside_the_installed_package() -> None:
    folder = resources.files("xnorlab") / "resources" / "calibration"
    shipped = [folder / name for name in PHOTO_FILES]
    assert all(item.is_file() for item in shipped) and len(shipped) == 8
    assert [p.read_bytes() for p in photo_paths()] == [item.read_bytes() for item in shipped]
    total = sum(len(item.read_bytes()) for item in shipped)
    assert 20_000 < total < 400_000  # a few hundred KB at most
    readme = (folder / "README.md").read_text(encoding="utf-8")
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    assert sorted(row.split("`")[1] for row in rows) == sorted(PHOTO_FILES)
    assert all("public domain" in row or "CC0" in row for row in rows)


def test_no_module_of_the_package_imports_scikit_image() -> None:
    package = Path(calibration.__file__).resolve().parent.parent
    offenders = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "skimage"]
    assert offenders == []


def test_photos_decode_with_scikit_image_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "skimage", None)  # any import of it now fails
    monkeypatch.setattr(calibration, "_batches", {})
    calibration._photo_pixels.cache_clear()
    try:
        assert calibration_batch((3, 16, 16)).shape == (PHOTO_COUNT, 3, 16, 16)
    finally:
        calibration._photo_pixels.cache_clear()


@pytest.mark.parametrize("shape", [(3, 224, 224), (3, 32, 48), (1, 28, 28), (1, 5, 300)])
def test_batch_has_the_model_input_shape_and_finite_values(shape: tuple[int, int, int]) -> None:
    batch = calibration_batch(shape)
    assert batch.shape == (PHOTO_COUNT, *shape) and batch.dtype == torch.float32
    assert bool(torch.isfinite(batch).all())
    assert len({float(sample.std()) for sample in batch}) == PHOTO_COUNT  # 8 different photos


def test_imagenet_normalisation_statistics() -> None:
    batch = calibration_batch((3, 224, 224))
    mean, std = batch.mean(dim=(0, 2, 3)), batch.std(dim=(0, 2, 3))
    assert bool((mean.abs() < 0.75).all()) and bool(((std > 0.6) & (std < 1.6)).all())
    pixels = IMAGENET_PREPROCESSING.denormalize(batch)
    assert float(pixels.min()) >= -1e-5 and float(pixels.max()) <= 1 + 1e-5
    assert float(pixels.max()) > 0.9 and float(pixels.min()) < 0.1  # real contrast


def test_batch_is_the_dropped_image_path_with_a_centre_crop() -> None:
    rgb = torch.from_numpy(image_to_array(photo_paths()[2])).float().permute(2, 0, 1)
    expected = pixels_to_input(rgb, IMAGENET_PREPROCESSING)  # 224x224 centre crop
    torch.testing.assert_close(calibration_batch((3, 224, 224))[2], expected)


def test_grayscale_is_the_luminance_with_the_demo_models_normalisation() -> None:
    gray = MNIST_PREPROCESSING.denormalize(calibration_batch((1, 40, 40)))
    colour = IMAGENET_PREPROCESSING.denormalize(calibration_batch((3, 40, 40)))
    torch.testing.assert_close(gray, (colour * LUMA).sum(dim=1, keepdim=True), atol=2e-3, rtol=0)


def test_model_preprocessing_is_used_when_its_shape_matches() -> None:
    cifar = calibration_batch((3, 32, 32), CIFAR10_PREPROCESSING)
    imagenet = calibration_batch((3, 32, 32))
    assert not torch.allclose(cifar, imagenet)  # other mean/std ...
    torch.testing.assert_close(  # ... of the same pixels
        CIFAR10_PREPROCESSING.denormalize(cifar), IMAGENET_PREPROCESSING.denormalize(imagenet)
    )
    other_size = calibration_batch((3, 64, 64), CIFAR10_PREPROCESSING)  # shape differs: ImageNet
    assert torch.equal(other_size, calibration_batch((3, 64, 64)))


def test_count_and_fresh_tensors() -> None:
    assert calibration_batch((3, 16, 16), count=3).shape[0] == 3
    assert calibration_batch((3, 16, 16), count=50).shape[0] == PHOTO_COUNT
    first = calibration_batch((3, 16, 16))
    first.zero_()
    assert float(calibration_batch((3, 16, 16)).abs().sum()) > 0  # the cache was not changed


@pytest.mark.parametrize("shape", [(2, 8, 8), (4, 224, 224), (3, 8), (3, 0, 5), (16,)])
def test_shapes_the_photos_cannot_serve_raise_a_clear_error(shape: tuple[int, ...]) -> None:
    with pytest.raises(XnorlabError, match=r"C = 1 or 3"):
        calibration_batch(shape)


def test_bad_count_raises() -> None:
    with pytest.raises(XnorlabError, match="count"):
        calibration_batch((3, 8, 8), count=0)


def test_description_says_unlabelled() -> None:
    assert calibration.describe() == "bundled calibration photos (8, unlabelled)"
    assert calibration.describe(1) == "bundled calibration photos (1 of 8, unlabelled)"


def _session(channels: int) -> LabSession:
    net = nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.Flatten(), nn.Linear(256, 3))
    session = LabSession()
    session.adopt(LoadedModel("tiny", net, (channels, 8, 8), ["a", "b", "c"]))
    return session


def test_session_inputs_are_photos_without_a_dataset_then_the_dataset() -> None:
    session = _session(3)
    inputs = session.activation_inputs(4)
    assert inputs.kind is InputKind.CALIBRATION and not inputs.labelled
    assert inputs.description == "bundled calibration photos (4 of 8, unlabelled)"
    batch = inputs.load()
    assert batch is not None and torch.equal(batch, calibration_batch((3, 8, 8), count=4))
    val = torch.utils.data.TensorDataset(torch.randn(6, 3, 8, 8), torch.arange(6) % 3)
    bundle = type("Bundle", (), {"val": val, "input_shape": (3, 8, 8), "class_names": []})()
    session.set_dataset(bundle, "six")
    inputs = session.activation_inputs(4)
    assert inputs.kind is InputKind.DATASET and inputs.labelled
    assert inputs.description == "six, 4 items, seed 0 (a: 1, b: 1, c: 2)"  # stratified
    loaded = inputs.load()
    assert loaded is not None and len(loaded) == 4
    rows = [next(i for i, x in enumerate(val.tensors[0]) if torch.equal(row, x)) for row in loaded]
    assert len(set(rows)) == 4 and sorted({r % 3 for r in rows}) == [0, 1, 2]  # every class


def test_session_without_usable_inputs() -> None:
    assert LabSession().activation_inputs().kind is InputKind.NONE
    inputs = _session(2).activation_inputs()
    assert inputs.kind is InputKind.NONE and inputs.load() is None
    assert "open a dataset" in inputs.description


def test_report_data_without_a_dataset() -> None:
    photos = unlabelled_report_data((3, 224, 224), IMAGENET_PREPROCESSING)
    assert "bundled calibration photos (4 of 8, unlabelled)" in photos.name
    assert "no accuracy" in photos.name and photos.val_inputs is None and photos.val_labels is None
    assert torch.equal(photos.calibration, calibration_batch((3, 224, 224), count=4))
    small = unlabelled_report_data((1, 28, 28), MNIST_PREPROCESSING)  # 32 asked, 8 exist
    assert len(small.calibration) == PHOTO_COUNT and "(8, unlabelled)" in small.name
    noise = unlabelled_report_data((2, 8, 8), None, 5)
    assert noise.name.startswith(SYNTHETIC_NAME[:-1]) and "(2, 8, 8)" in noise.name
    assert noise.calibration.shape == (5, 2, 8, 8)


def test_report_default_without_a_model_dataset_is_the_photos() -> None:
    from xnorlab.cli.report import load_report_data

    loaded = _session(3).loaded
    assert loaded is not None and loaded.default_data is None
    data = load_report_data(loaded, None, None, 1000)  # no --data, no default data set
    assert torch.equal(data.calibration, calibration_batch((3, 8, 8)))
    assert data.val_inputs is None and "bundled calibration photos" in data.name
    forced = load_report_data(loaded, "random", 3, 1000)
    assert forced.name == SYNTHETIC_NAME and forced.calibration.shape == (3, 3, 8, 8)
