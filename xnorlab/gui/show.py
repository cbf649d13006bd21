"""``xnorlab.show(model, data)``: open the lab on a live ``nn.Module`` from a script or notebook.

``lab_inputs`` checks what the caller hands over and turns it into the session's own records
(Qt-free, one ``XnorlabError`` line for anything wrong); ``show`` opens a ``MainWindow`` on a
``LabSession`` that adopted them:

* ``model``: any ``nn.Module``. The lab works on a deep copy unless ``inplace=True``: layers are
  wrapped and modes switched on the caller's own module tree only then. Either way the lab's
  model is put in eval mode.
* ``data`` (optional): a map-style torch ``Dataset`` of ``(x, label)`` or ``x`` items, a
  ``DataLoader`` over one, an ``(X, y)`` pair of tensors or ``X`` alone (``(X,)``, ``(X, None)``).
  Inputs are model inputs ``(C, H, W)``, used as given (no preprocessing). Labelled data are
  split by the lab's one rule (``data.bundle.stratified_split``, 80 % train as for a folder):
  accuracy is measured on the part a training run in the lab never sees. Without labels every
  item is for statistics (activations, sign statistics, reports) and the val split stays
  empty, so no accuracy is measured and training in the lab cannot start.
* one input's shape: ``example_input`` (one input or a batch), else the data's first item,
  else the model's ``input_shape`` attribute.
* ``class_names``: one per model output; default the numbers ``0..K-1``.

``block=True`` runs the event loop until the window closes (a script); ``block=False`` returns
the shown window at once and leaves the loop to the caller (a notebook after ``%gui qt``, or a
script calling ``QApplication.instance().exec()``).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PySide6.QtCore import QCoreApplication, QThreadPool
from PySide6.QtWidgets import QApplication, QWidget
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset

from xnorlab.binary.surgery import copy_model
from xnorlab.common.errors import XnorlabError, quoted
from xnorlab.data.bundle import DatasetBundle, stratified_split
from xnorlab.data.images import Preprocessing
from xnorlab.data.sampling import NO_LABEL
from xnorlab.gui.app import SHUTDOWN_WAIT_MS, install_exception_hook
from xnorlab.gui.main_window import MainWindow
from xnorlab.lab.session import LabSession
from xnorlab.models import schema
from xnorlab.models.loaded import LoadedModel
from xnorlab.models.spec import LIVE_PREFIX

TRAIN_FRACTION = 0.8  # the share of labelled data a lab training run may use, as for a folder
DATA_NAME = "data from Python"

Item = tuple[Tensor, int]


class _Items(Dataset[Item]):
    """``(x, label)`` items of the caller's data with every label read once (``labels``, as
    ``data.sampling`` reads them without loading items)."""

    def __init__(self, inputs: Tensor | Dataset[Any], labels: np.ndarray, tuples: bool) -> None:
        self.inputs, self.labels, self.tuples = inputs, labels, tuples

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> Item:
        item = self.inputs[index]
        x = item[0] if self.tuples else item
        return torch.as_tensor(x), int(self.labels[index])


@dataclass(frozen=True)
class LabInputs:
    """What ``show`` hands the session: the model record and the data set (or None)."""

    loaded: LoadedModel
    bundle: DatasetBundle | None


# ----------------------------------------------------------------------------- checks


def _input_shape_of(shape: Sequence[int], what: str) -> tuple[int, int, int]:
    try:
        return schema.input_shape([int(side) for side in shape])
    except XnorlabError as exc:
        raise XnorlabError(f"{what}: {exc}") from None


def _example_shape(example: Any) -> tuple[int, int, int]:
    if not isinstance(example, Tensor):
        raise XnorlabError(f"example_input must be a tensor, got {type(example).__name__}")
    if example.dim() not in (3, 4) or (example.dim() == 4 and example.shape[0] < 1):
        raise XnorlabError(
            f"example_input must be one input (C, H, W) or a batch of them (N, C, H, W), "
            f"got shape {tuple(example.shape)}"
        )
    return _input_shape_of(example.shape[-3:], "example_input")


def _labels_tensor(y: Any, count: int) -> np.ndarray:
    if not isinstance(y, Tensor):
        raise XnorlabError(f"y must be a tensor of class labels, got {type(y).__name__}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise XnorlabError(f"y must hold integer class labels (e.g. torch.int64), got {y.dtype}")
    if y.dim() != 1:
        raise XnorlabError(f"y must be one label per item (N,), got shape {tuple(y.shape)}")
    if len(y) != count:
        raise XnorlabError(f"X has {count} items but y has {len(y)} labels")
    labels: np.ndarray = y.detach().cpu().long().numpy()
    return labels


def _pair_items(data: Any) -> tuple[_Items, bool]:
    """``X``, ``(X,)``, ``(X, None)`` or ``(X, y)`` as items; whether they are labelled."""
    parts = list(data) if isinstance(data, (tuple, list)) else [data]
    if not 1 <= len(parts) <= 2:
        raise XnorlabError(f"data as a tuple must be (X, y) or (X,), got {len(parts)} parts")
    x = parts[0]
    if not isinstance(x, Tensor) or x.dim() != 4 or not x.is_floating_point():
        kind = f"a {x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, Tensor) else (
            type(x).__name__)  # fmt: skip
        raise XnorlabError(f"X must be a float tensor of inputs (N, C, H, W), got {kind}")
    if len(x) == 0:
        raise XnorlabError("X holds no items")
    y = parts[1] if len(parts) == 2 else None
    if y is None:
        return _Items(x.detach(), np.full(len(x), NO_LABEL, dtype=np.int64), False), False
    return _Items(x.detach(), _labels_tensor(y, len(x)), False), True


def _label_of(label: Any, index: int) -> int:
    if isinstance(label, Tensor) and label.dim() == 0 and not label.is_floating_point():
        label = label.item()
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
        raise XnorlabError(
            f"item {index}'s label must be an integer class label, got {quoted(label)}"
        )
    return int(label)


def _dataset_items(dataset: Any) -> tuple[_Items, bool]:
    """A map-style data set's items; its labels read once (torchvision's ``targets`` when it
    has them, else from every item)."""
    if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__"):
        raise XnorlabError(
            "data must be a map-style Dataset (with len and indexing); pass an iterable one "
            "as tensors (X, y)"
        )
    count = len(dataset)
    if count == 0:
        raise XnorlabError("the data set has no items")
    first = dataset[0]
    tuples = isinstance(first, (tuple, list))
    if tuples and len(first) >= 2:
        targets = getattr(dataset, "targets", None)  # torchvision's data sets keep labels apart
        if targets is not None and len(targets) == count:
            labels = [_label_of(t, i) for i, t in enumerate(targets)]
        else:
            labels = [_label_of(dataset[i][1], i) for i in range(count)]
        return _Items(dataset, np.asarray(labels, dtype=np.int64), True), True
    return _Items(dataset, np.full(count, NO_LABEL, dtype=np.int64), tuples), False


def data_items(data: Any) -> tuple[_Items, bool]:
    """The caller's data as items, and whether they carry labels (see the module docstring)."""
    if isinstance(data, DataLoader):
        data = data.dataset
    if isinstance(data, (Tensor, tuple, list)):
        return _pair_items(data)
    if isinstance(data, Dataset):
        return _dataset_items(data)
    raise XnorlabError(
        f"data must be a torch Dataset, a DataLoader or an (X, y) pair of tensors, "
        f"got {type(data).__name__}"
    )


def _item_shape(items: _Items) -> tuple[int, int, int]:
    x, _ = items[0]
    if x.dim() != 3 or not x.is_floating_point():
        raise XnorlabError(
            f"the data's inputs must be float tensors (C, H, W), got {x.dtype} {tuple(x.shape)}"
        )
    return _input_shape_of(x.shape, "the data's inputs")


def _model_shape(model: nn.Module) -> tuple[int, int, int] | None:
    value = getattr(model, "input_shape", None)  # the demos' and user classes' convention
    if value is None:
        return None
    return _input_shape_of(value, f"{type(model).__name__}.input_shape")


def _input_shape(model: nn.Module, items: _Items | None, example: Any) -> tuple[int, int, int]:
    from_example = _example_shape(example) if example is not None else None
    from_data = _item_shape(items) if items is not None else None
    if from_example and from_data and from_example != from_data:
        raise XnorlabError(
            f"example_input has the shape {from_example} but the data's inputs {from_data}"
        )
    shape = from_example or from_data or _model_shape(model)
    if shape is None:
        raise XnorlabError(
            "give example_input (one input) or data: the lab needs the shape of the model's input"
        )
    return shape


def _class_names(model: nn.Module, shape: tuple[int, int, int], names: Any) -> list[str]:
    given: list[str] = []
    if names is not None:
        if isinstance(names, str) or not isinstance(names, Sequence):
            raise XnorlabError(f"class_names must be a list of strings, got {quoted(names)}")
        given = schema.class_names(list(names))
    try:
        classes = schema.check_model_runs(model, shape, given)
    except XnorlabError as exc:
        raise XnorlabError(f"{type(model).__name__}: {exc}") from None
    return given or [str(i) for i in range(classes)]


def _bundle(items: _Items, labelled: bool, names: list[str]) -> DatasetBundle:
    channels, height, width = _item_shape(items)
    if channels not in (1, 3):
        raise XnorlabError(
            f"the lab shows data of 1 or 3 channels (images); these inputs have {channels}"
        )
    prep = Preprocessing(
        channels=channels,
        height=height,
        width=width,
        mean=(0.0,) * channels,
        std=(1.0,) * channels,
    )  # fmt: skip  (inputs are used as given)
    if labelled:
        wrong = items.labels[(items.labels < 0) | (items.labels >= len(names))]
        if len(wrong):
            raise XnorlabError(
                f"the labels hold class {int(wrong[0])} but the model gives {len(names)} "
                f"classes (0..{len(names) - 1})"
            )
        train_idx, val_idx = stratified_split(items.labels, TRAIN_FRACTION)
        train, val = Subset(items, train_idx.tolist()), Subset(items, val_idx.tolist())
        what = f"{len(items)} labelled items, split {len(train_idx)} train / {len(val_idx)} val"
    else:
        train, val = Subset(items, list(range(len(items)))), Subset(items, [])
        what = f"{len(items)} items without labels: statistics, no accuracy"
    return DatasetBundle(
        DATA_NAME, train, val, list(names), prep, description=what,
        info={"labelled": labelled, "items": len(items)},
    )  # fmt: skip


def lab_inputs(
    model: Any,
    data: Any = None,
    *,
    class_names: Sequence[str] | None = None,
    example_input: Tensor | None = None,
    inplace: bool = False,
) -> LabInputs:
    """The session's records of what ``show`` was given, every input checked (module
    docstring); one ``XnorlabError`` line for the first thing wrong."""
    if not isinstance(model, nn.Module):
        raise XnorlabError(f"xnorlab.show needs a torch nn.Module, got {type(model).__name__}")
    items, labelled = data_items(data) if data is not None else (None, False)
    shape = _input_shape(model, items, example_input)
    lab_model = model if inplace else _copy(model)
    names = _class_names(lab_model, shape, class_names)
    card = {"live": True, "inplace": inplace}
    loaded = LoadedModel(f"{LIVE_PREFIX}{type(model).__name__}", lab_model, shape, names, card=card)
    return LabInputs(loaded, _bundle(items, labelled, names) if items is not None else None)


def _copy(model: nn.Module) -> nn.Module:
    try:
        return copy_model(model, share_tensors=False)
    except Exception as exc:  # deepcopy runs the class's own __deepcopy__/__reduce__
        raise XnorlabError(
            f"cannot copy {type(model).__name__} ({type(exc).__name__}: "
            f"{quoted(str(exc), 80)}): pass inplace=True to let the lab change it"
        ) from None


# ----------------------------------------------------------------------------- window


class LiveWindow(MainWindow):
    """The main window on a model handed over from Python: it is not remembered as the last
    model (a live module has no name to reopen it by); models opened in it later are."""

    def remember_model(self, spec: str) -> None:
        if not spec.startswith(LIVE_PREFIX):
            super().remember_model(spec)


def _application() -> QCoreApplication:
    """The running Qt application, or a new one (kept alive by Qt as its one instance)."""
    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
        app.setOrganizationName("xnorlab")
        app.setApplicationName("xnorlab")
    return app


def open_window(inputs: LabInputs, parent: QWidget | None = None) -> LiveWindow:
    """A shown ``LiveWindow`` on a new session that adopted ``inputs``."""
    window = LiveWindow(LabSession(), parent)
    window.session.adopt(inputs.loaded)
    if inputs.bundle is not None:
        window.session.set_dataset(inputs.bundle, f"{DATA_NAME} ({inputs.bundle.description})")
    window.show()
    return window


def _run(app: QCoreApplication, window: LiveWindow) -> None:
    """The event loop until the window closes, uncaught exceptions shown in it meanwhile."""
    hooks = sys.excepthook, threading.excepthook
    install_exception_hook().window = window
    try:
        app.exec()
    finally:
        sys.excepthook, threading.excepthook = hooks
        QThreadPool.globalInstance().waitForDone(SHUTDOWN_WAIT_MS)  # workers were asked to stop


def show(
    model: nn.Module,
    data: Any = None,
    *,
    class_names: Sequence[str] | None = None,
    example_input: Tensor | None = None,
    inplace: bool = False,
    block: bool = True,
) -> MainWindow:
    """Open the lab on ``model`` (see the module docstring) and return its main window."""
    inputs = lab_inputs(
        model, data, class_names=class_names, example_input=example_input, inplace=inplace
    )
    app = _application()
    window = open_window(inputs)
    if block:
        _run(app, window)
    return window
