"""User data as an image folder: one sub-folder per class (ImageFolder layout).

``ROOT/<class>/*.png|jpg|...`` (searched recursively inside each class folder). When ``ROOT``
holds ``train/`` and ``val/`` (or ``test/``) sub-folders, each is such a class folder tree and
they are the two splits; otherwise each class is split 80/20 (train/val) with
``data.SPLIT_SEED``. Classes are the sub-folder names, sorted; images are decoded lazily with
``images.load_image`` (a corrupt file raises ``XnorlabError`` naming it when it is read).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import Tensor
from torch.utils.data import Dataset

from xnorlab.common.errors import XnorlabError
from xnorlab.data.bundle import SPLIT_SEED, DatasetBundle, stratified_split
from xnorlab.data.images import IMAGE_SUFFIXES, Preprocessing, load_image

DEFAULT_FOLDER_PREPROCESSING = Preprocessing()  # 3 x 32 x 32, mean/std 0.5
_SPLIT_NAMES = (("train", "val"), ("train", "test"))


class ImageFiles(Dataset[tuple[Tensor, int]]):
    """``(path, label)`` pairs loaded with ``load_image`` on access."""

    def __init__(self, items: list[tuple[Path, int]], preprocessing: Preprocessing) -> None:
        self.items = items
        self.preprocessing = preprocessing

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path, label = self.items[index]
        return load_image(path, self.preprocessing), label

    @property
    def labels(self) -> np.ndarray:
        """Every item's label, known from its folder without decoding the image."""
        return np.asarray([label for _, label in self.items], dtype=np.int64)


def _class_dirs(root: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")}


def _images_in(folder: Path) -> list[Path]:

    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def _items(root: Path, names: list[str]) -> list[tuple[Path, int]]:
    dirs = _class_dirs(root)
    return [
        (path, label)
        for label, name in enumerate(names)
        if name in dirs
        for path in _images_in(dirs[name])
    ]


def _find_splits(root: Path) -> tuple[Path, Path] | None:
    for train_name, val_name in _SPLIT_NAMES:
        train, val = root / train_name, root / val_name
        if train.is_dir() and val.is_dir() and _class_dirs(train):
            return train, val
    return None


def load_image_folder(root: Path, preprocessing: Preprocessing | None = None) -> DatasetBundle:
    """Build a ``DatasetBundle`` from an image folder (see the module docstring)."""

    prep = preprocessing or DEFAULT_FOLDER_PREPROCESSING
    splits = _find_splits(root)
    if splits is not None:
        names = sorted(set(_class_dirs(splits[0])) | set(_class_dirs(splits[1])))
        train_items, val_items = _items(splits[0], names), _items(splits[1], names)
        how = f"{splits[0].name}/ and {splits[1].name}/ sub-folders"
    else:
        names = sorted(_class_dirs(root))
        if not names:
            raise XnorlabError(f"{root} has no class sub-folders (expected ROOT/<class>/<images>)")
        items = _items(root, names)
        labels = np.array([label for _, label in items])
        train_idx, val_idx = stratified_split(labels, 0.8)
        train_items = [items[int(i)] for i in train_idx]
        val_items = [items[int(i)] for i in val_idx]
        how = f"80/20 split per class, seed {SPLIT_SEED}"
    if not train_items and not val_items:
        raise XnorlabError(f"no images found under {root} (looked in {len(names)} class folders)")
    return DatasetBundle(
        name=str(root),
        train=ImageFiles(train_items, prep),
        val=ImageFiles(val_items, prep),
        class_names=names,
        preprocessing=prep,
        description=f"image folder {root}: {len(names)} classes, {how}",
        info={"train": len(train_items), "val": len(val_items)},
    )
