"""Data set specs: shipped digits, torchvision folders, image folders, class matching."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xnorlab.common.errors import XnorlabError
from xnorlab.data.datasets import (
    CIFAR10_PREPROCESSING,
    load_dataset,
    match_classes,
    stratified_split,
)
from xnorlab.data.images import MNIST_PREPROCESSING


def _labels(dataset) -> list[int]:
    return [int(dataset[i][1]) for i in range(len(dataset))]


def test_mnist5k_fixed_balanced_disjoint_split() -> None:
    bundle = load_dataset("mnist5k")
    assert (len(bundle.train), len(bundle.val)) == (4000, 1000)
    assert bundle.input_shape == (1, 28, 28) and bundle.class_names == [str(d) for d in range(10)]
    assert np.bincount(_labels(bundle.val)).tolist() == [100] * 10
    train_x = bundle.train.tensors[0]
    val_x = bundle.val.tensors[0]
    # no digit is in both splits (compare exact pixel rows)
    train_rows = {row.numpy().tobytes() for row in train_x.flatten(1)}
    assert not any(row.numpy().tobytes() in train_rows for row in val_x.flatten(1))
    again = load_dataset("mnist5k")
    assert torch.equal(again.val.tensors[0], val_x)  # the split is fixed
    # normalized with MNIST's statistics: background is (0 - 0.1307) / 0.3081
    assert float(val_x.min()) == pytest.approx(-0.1307 / 0.3081, abs=1e-5)


def test_stratified_split_is_seeded_and_per_class() -> None:
    labels = np.repeat(np.arange(3), 10)
    train, val = stratified_split(labels, 0.8)
    assert len(train) == 24 and len(val) == 6 and not set(train) & set(val)
    assert np.bincount(labels[val]).tolist() == [2, 2, 2]
    assert np.array_equal(
        stratified_split(labels, 0.8, seed=1)[0], stratified_split(labels, 0.8, seed=1)[0]
    )
    assert not np.array_equal(stratified_split(labels, 0.8, seed=1)[1], val)


def test_sklearn_digits_in_mnist_layout_and_converted_to_another_model() -> None:
    bundle = load_dataset("digits")
    assert len(bundle.train) + len(bundle.val) == 1797
    x = bundle.val.tensors[0]
    pixels = x * 0.3081 + 0.1307
    assert float(pixels[:, :, :4].abs().max()) < 1e-5  # 4-pixel empty frame like MNIST
    rgb = load_dataset("digits", CIFAR10_PREPROCESSING)
    assert rgb.input_shape == (3, 32, 32) and rgb.val.tensors[0].shape[1:] == (3, 32, 32)


def _write_idx(path: Path, array: np.ndarray) -> None:
    magic = 0x0803 if array.ndim == 3 else 0x0801
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_torchvision_mnist_from_a_local_root(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 12), ("t10k", 5)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (count, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(count) % 10)
    bundle = load_dataset(f"mnist:{tmp_path}")
    assert (len(bundle.train), len(bundle.val)) == (12, 5)
    image, label = bundle.val[3]
    assert image.shape == (1, 28, 28) and label == 3
    assert bundle.preprocessing == MNIST_PREPROCESSING


class _Payload:
    """Pickled as a call to print: a weights-only load must refuse it."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("unpickled",))


def _damage_mnist(root: Path, kind: str) -> None:
    """An MNIST root whose files torchvision finds but cannot read as MNIST, one per kind."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images, labels = np.zeros((12, 28, 28)), np.arange(12) % 10
    if kind == "labels out of range":
        labels = np.full(12, 200)
    elif kind == "fewer labels than images":
        labels = labels[:7]
    for prefix in ("train", "t10k"):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    image_file = raw / "train-images-idx3-ubyte"
    if kind == "truncated images":
        image_file.write_bytes(image_file.read_bytes()[:2000])
    elif kind == "empty file":
        image_file.write_bytes(b"")
    elif kind == "labels file as images":
        image_file.write_bytes((raw / "train-labels-idx1-ubyte").read_bytes())
    elif kind.startswith("legacy"):  # torchvision reads processed/*.pt before raw files
        processed = root / "MNIST" / "processed"
        processed.mkdir()
        labels_t = torch.arange(12) % 10
        held = {
            "legacy pickle of an object": _Payload(),
            "legacy list of three": [1, 2, 3],
            "legacy images of another size": (torch.zeros(12, 10, 3, dtype=torch.uint8), labels_t),
            "legacy float pixels": (torch.full((12, 28, 28), float("nan")), labels_t),
        }[kind]
        for name in ("training.pt", "test.pt"):
            torch.save(held, processed / name)


@pytest.mark.parametrize(
    "kind",
    ["truncated images", "empty file", "labels file as images", "labels out of range",
     "fewer labels than images", "legacy pickle of an object", "legacy list of three",
     "legacy images of another size", "legacy float pixels"],
)  # fmt: skip
def test_a_damaged_torchvision_root_is_one_error_before_any_work(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _damage_mnist(tmp_path, kind)
    with pytest.raises(XnorlabError, match=r"^MNIST under .* cannot be read \(.*\): its files"):
        load_dataset(f"mnist:{tmp_path}")
    assert "unpickled" not in capsys.readouterr().out


def test_torchvision_offline_gives_one_clear_error(tmp_path: Path, monkeypatch) -> None:
    import torchvision.datasets as tvd

    def offline(self) -> None:
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tvd.FashionMNIST, "download", offline)
    with pytest.raises(XnorlabError, match=r"FashionMNIST not found under .* offline, copy"):
        load_dataset(f"fashionmnist:{tmp_path}")


def test_a_missing_torchvision_root_is_refused_without_creating_it(tmp_path: Path) -> None:
    root = tmp_path / "nonexistent"
    with pytest.raises(XnorlabError, match="does not exist"):
        load_dataset(f"mnist:{root}")
    assert not root.exists()


def _folder(root: Path, classes: dict[str, int]) -> None:
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            value = 40 * i % 256
            Image.new("RGB", (12 + i, 10), (value, 255 - value, 0)).save(root / name / f"{i}.png")


def test_image_folder_split_and_items(tmp_path: Path) -> None:
    _folder(tmp_path, {"cat": 5, "dog": 5})
    (tmp_path / "cat" / "readme.txt").write_text("ignored")
    bundle = load_dataset(str(tmp_path))
    assert bundle.class_names == ["cat", "dog"]
    assert (len(bundle.train), len(bundle.val)) == (8, 2)
    assert sorted(_labels(bundle.val)) == [0, 1]
    assert bundle.val[0][0].shape == (3, 32, 32)
    assert len(bundle.split("all")) == 10


def test_image_folder_with_train_and_val_subfolders(tmp_path: Path) -> None:
    _folder(tmp_path / "train", {"a": 2, "b": 2})
    _folder(tmp_path / "val", {"a": 1, "b": 1})
    bundle = load_dataset(str(tmp_path), MNIST_PREPROCESSING)
    assert (len(bundle.train), len(bundle.val)) == (4, 2)
    assert bundle.val[1][0].shape == (1, 28, 28)


def test_folder_classes_matched_to_model_by_name(tmp_path: Path) -> None:
    _folder(tmp_path, {"7": 2, "3": 2})
    bundle = load_dataset(str(tmp_path), MNIST_PREPROCESSING, [str(d) for d in range(10)])
    assert set(_labels(bundle.split("all"))) == {3, 7}
    with pytest.raises(XnorlabError, match="not classes of the model"):
        load_dataset(str(tmp_path), MNIST_PREPROCESSING, ["cat", "dog"])
    relabelled = match_classes(load_dataset(str(tmp_path)), ["x", "7", "3"])
    assert set(_labels(relabelled.split("all"))) == {1, 2}


def test_bad_folders_and_specs(tmp_path: Path) -> None:
    with pytest.raises(XnorlabError, match="no class sub-folders"):
        load_dataset(str(tmp_path))
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(XnorlabError, match="no images found"):
        load_dataset(str(tmp_path))
    (tmp_path / "empty_class" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    bundle = load_dataset(str(tmp_path))
    with pytest.raises(XnorlabError, match=r"broken\.png"):
        bundle.split("all")[0]
    with pytest.raises(XnorlabError, match="unknown data"):
        load_dataset("imagenet-but-not-here")
    with pytest.raises(XnorlabError, match="unknown split"):
        load_dataset("digits").split("test")
