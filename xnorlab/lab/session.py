"""The lab session: the one Qt-free model object that every view of the app subscribes to.

``LabSession`` holds the open model (a ``LoadedModel`` whose layers are wrapped so their mode can
be switched), the open dataset, the selected layer and the undo/redo history of layer-config
changes. Views never change the model directly: they call the session's methods and redraw on
its events (napari's model/view split), so a script, a test and the GUI see the same behaviour.

Events (``xnorlab.common.signals.Signal``; slots run in the calling thread):

* ``model_changed()``: a new model was opened or adopted;
* ``modes_changed(names: list[str])``: the config (mode, scaling, ...) of these layers changed;
* ``selection_changed(name: str | None)``;
* ``data_changed()``: a dataset was opened or dropped;
* ``error(message: str)``: a user-facing error happened (see ``attempt``);
* ``images_dropped(paths: list[str])``: image files the user wants predicted;
* ``weights_changed()``: the weights of the live model changed in place (e.g. fine-tuning);
* ``dataset_requested(spec: str)``: a newly adopted model wants its default dataset. If
  anything is connected (the GUI, which loads it in a worker), the session only emits this;
  otherwise it loads the dataset itself, synchronously;
* ``model_requested(path: str)``: the same for a dropped model file (``open_paths``);
* ``lock_changed(reason: str)``: layer configs were locked (``reason`` says why) or unlocked
  (``""``);
* ``search_changed()``: ``last_search`` was set (a search finished) or cleared.

Mode lock: while a run depends on the layer configs (training trains in the current modes),
``lock_modes(reason)`` refuses every config change (one layer, presets, patterns, settings,
undo and redo) with an ``XnorlabError`` that gives the reason, so a result always belongs to
the modes it was started with. ``unlock_modes()`` ends it.

Search (``xnorlab.search.walk.search_modes``): ``begin_search(options)`` locks the modes and
returns a ``SearchJob`` on a snapshot and the open dataset (without one, crops of the bundled
photos: unlabelled, so accuracy is agreement with float), whose ``run`` a worker calls; ``end_search(job, result)``
(on the session's thread) unlocks and keeps the result as ``last_search`` if the job's model
is still the open one. ``run_search`` does the three in one call (scripts, tests).
``apply_search_point(i)`` applies the modes of ``search_points()[i]`` as one undoable step,
on the model's own weights. After a search with fine-tune epochs, ``adopt_search_finetuned()``
applies the chosen modes (one undoable step) *and* the weights fine-tuned for them, the ones
its confirm figure counted, as training does (``mark_weights_changed``; undo reverts the modes,
not the weights). A search answers for the model it measured: opening another model, or
changing the weights in place, clears ``last_search``.

Weights changed in place (``mark_weights_changed(note, card)``) are no longer the file's:
``display_name`` says so (``demo:lenet (fine-tuned)``) until another model is opened, while
``model_name`` stays the spec that reopens the file; ``weights_card`` is the card of the run
that made them (what a saved checkpoint records instead of the file's card).

Inputs of the activation views: ``activation_inputs(n)`` gives a sample of the open dataset
drawn by ``xnorlab.data.sampling`` (seeded, shuffled, class-stratified, a whole number of
items per class where ``n`` allows: a data set sorted by class would otherwise show one class
only), or, without a dataset, the bundled calibration photos (``xnorlab.data.calibration``:
real but *unlabelled*, never used for accuracy) when the model takes 1- or 3-channel images.

Every method that can fail raises ``XnorlabError`` and leaves the session unchanged.
Threads: call the session from one thread (the GUI thread). Workers compute on
``snapshot()``, a copy of the module tree that shares the weight tensors, so a worker never
sees a half-applied change and never changes the live model.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from torch import Tensor, nn
from torch.utils.data import Dataset

from xnorlab.binary.layers import BinarizableLayer, LayerConfig
from xnorlab.binary.modes import Mode
from xnorlab.binary.surgery import (
    LayerInfo,
    copy_model,
    layer_macs,
    list_layers,
    preset_modes,
    unbinarizable_layers,
    validate_mode_map,
    wrap_layers,
)
from xnorlab.common.errors import XnorlabError
from xnorlab.common.signals import Signal
from xnorlab.common.tasks import CancelFn, ProgressFn
from xnorlab.data import calibration
from xnorlab.data.bundle import DatasetBundle
from xnorlab.data.datasets import load_dataset
from xnorlab.data.images import IMAGE_SUFFIXES, Preprocessing
from xnorlab.data.sampling import SAMPLE_SEED, SampleInfo
from xnorlab.measure.accuracy import sample_tensors
from xnorlab.measure.front import FrontPoint, SearchResult
from xnorlab.models.checkpoint import CHECKPOINT_SUFFIXES, load_state_into
from xnorlab.models.loaded import LoadedModel
from xnorlab.models.spec import load_model_spec
from xnorlab.models.xnor_file import SUFFIX as XNOR_SUFFIX
from xnorlab.search.finetune import finetuned_meta
from xnorlab.search.walk import SearchOptions, search_modes

MODEL_SUFFIXES = (*CHECKPOINT_SUFFIXES, XNOR_SUFFIX)  # the files a drop or Open model opens
DEFAULT_SAMPLE_SIZE = 16
SEARCH_LOCK_REASON = "a search measures the current model (Cancel it in the Search tab first)"

T = TypeVar("T")
Wrapped = BinarizableLayer


@dataclass(frozen=True)
class ConfigChange:
    """One undoable step: the configs of some layers before and after."""

    label: str
    before: Mapping[str, LayerConfig]
    after: Mapping[str, LayerConfig]


class InputKind(str, Enum):
    """Where the activation views' inputs come from."""

    DATASET = "dataset"  # the open dataset (labelled)
    CALIBRATION = "calibration"  # the bundled photos (unlabelled: no accuracy)
    NONE = "none"  # nothing fits: weights only


NO_INPUT_TEXT = "no input: open a dataset (Ctrl+D)"


@dataclass(frozen=True)
class ActivationInputs:
    """The batch the activation views and the table's error columns run on, and its source.

    ``description`` is what the views show (e.g. ``bundled calibration photos (8,
    unlabelled)``). ``load()`` returns the ``(N, C, H, W)`` batch or ``None``; for the photos it
    decodes and converts them (cached per shape), so call it in a worker.
    """

    kind: InputKind
    description: str
    count: int = 0
    batch: Tensor | None = None  # DATASET: the samples, already in memory
    input_shape: tuple[int, ...] = ()  # CALIBRATION: the model's input
    preprocessing: Preprocessing | None = None  # CALIBRATION: how photos become inputs
    labels: Tensor | None = None  # DATASET: the label of each sample, in batch order
    sample: SampleInfo | None = None  # DATASET: what the sample holds (classes, seed)
    class_names: tuple[str, ...] = ()  # DATASET: names of the labels

    @property
    def labelled(self) -> bool:
        """True only for dataset samples: accuracy may never come from the photos."""
        return self.kind is InputKind.DATASET

    def load(self) -> Tensor | None:
        """The batch (thread-safe)."""
        if self.kind is InputKind.CALIBRATION:
            return calibration.calibration_batch(self.input_shape, self.preprocessing, self.count)
        return self.batch

    def label_of(self, index: int) -> str:
        """The class name of sample ``index`` ("" for unlabelled inputs)."""
        if self.labels is None or not 0 <= index < len(self.labels):
            return ""
        label = int(self.labels[index])
        if label < 0:  # an input given without a label (xnorlab.show), as torchvision's STL10
            return ""
        return self.class_names[label] if label < len(self.class_names) else str(label)


def snapshot_model(model: nn.Module) -> nn.Module:
    """A copy of ``model``'s module tree that shares every Parameter and buffer with it.

    Copies only the module objects and their configs (cheap, even for resnet18), so a worker
    can switch modes and add hooks on the copy without touching the live model. Native-engine
    caches are not copied (the copy starts with ``native_cache = None``).
    """
    return copy_model(model, share_tensors=True)


def load_dataset_for(spec: str, loaded: LoadedModel | None = None) -> DatasetBundle:
    """Load dataset ``spec`` in the input format of ``loaded`` (thread-safe, no session state)."""
    preprocessing = loaded.preprocessing if loaded is not None else None
    return load_dataset(spec, preprocessing=preprocessing)


def _call_load_model(spec: str, trust: bool) -> LoadedModel:
    try:
        return load_model_spec(spec, trust=trust)
    except XnorlabError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise XnorlabError(f"cannot open model {spec!r}: {exc}") from None


def _is_empty(split: Dataset[tuple[Tensor, int]]) -> bool:
    try:
        return len(split) == 0  # type: ignore[arg-type]
    except TypeError:  # a dataset without a length (iterable-style) is not known to be empty
        return False


def whole_shares(limit: int, classes: int) -> int:
    """The largest multiple of ``classes`` up to ``limit`` (``limit`` when it is smaller than
    ``classes`` or there are no classes): a stratified sample of a balanced data set then
    gives every class the same number of items."""
    if classes < 1 or limit < classes:
        return limit
    return limit - limit % classes


@dataclass(frozen=True)
class DrawnSample:
    """Items drawn from the open dataset (``xnorlab.data.sampling``), stacked."""

    inputs: Tensor
    labels: Tensor
    info: SampleInfo


@dataclass(frozen=True)
class SearchJob:
    """A search started by ``LabSession.begin_search``: a snapshot of the model, the items it
    runs on and the options. ``run`` is thread-safe (it touches no session state)."""

    loaded: LoadedModel  # the model the search was started on (its result belongs to it)
    model: nn.Module  # a weight-sharing snapshot (``search_modes`` copies it again)
    dataset: Dataset[tuple[Tensor, int]] | None  # None: crops of the bundled photos
    options: SearchOptions
    finetune_data: Dataset[tuple[Tensor, int]] | None  # None: the items in neither split

    def items(self) -> Dataset[tuple[Tensor, int]]:
        """The items the score and confirm splits are drawn from; without a dataset, seeded
        crops of the bundled photos (unlabelled: accuracy is agreement with float), decoded
        here, in the worker."""
        if self.dataset is not None:
            return self.dataset
        return calibration.PhotoCrops(tuple(self.loaded.input_shape), self.loaded.preprocessing)

    def run(
        self, *, progress: ProgressFn | None = None, should_cancel: CancelFn | None = None
    ) -> SearchResult:
        """The search itself (a worker's body); raises ``Cancelled`` when cancelled."""
        return search_modes(
            self.model, self.items(), self.options, progress=progress,
            should_cancel=should_cancel, finetune_data=self.finetune_data,
        )  # fmt: skip


FLOAT_POINT = "float"  # the name of the all-float point in ``search_points``


def search_point_title(name: str) -> str:
    """``point 3`` for a front point numbered 3, ``float point`` for the float one."""
    return "float point" if name == FLOAT_POINT else f"point {name}"


def search_point_label(name: str, point: FrontPoint) -> str:
    """The undo label of applying ``point``: ``search point 3 (1.42 ms, 98.9 %)``."""
    accuracy = 100 * point.accuracy.value
    return f"search {search_point_title(name)} ({point.latency_ms:.2f} ms, {accuracy:.1f} %)"


class LabSession:
    """Model + data + selection + undo history, with events (see the module docstring)."""

    def __init__(self, max_undo: int = 500) -> None:
        self.model_changed = Signal("model_changed")
        self.modes_changed = Signal("modes_changed")
        self.selection_changed = Signal("selection_changed")
        self.data_changed = Signal("data_changed")
        self.error = Signal("error")
        self.images_dropped = Signal("images_dropped")
        self.weights_changed = Signal("weights_changed")
        self.dataset_requested = Signal("dataset_requested")
        self.model_requested = Signal("model_requested")
        self.lock_changed = Signal("lock_changed")
        self.search_changed = Signal("search_changed")
        self.loaded: LoadedModel | None = None
        self.dataset: DatasetBundle | None = None
        self.dataset_spec: str | None = None
        self.selected: str | None = None
        self.macs: dict[str, int] = {}
        self.revision = 0  # bumped on every model/config/data change (stale-result check)
        self.max_undo = max_undo
        self.weights_note = ""  # how the live weights differ from the file's ("" = they don't)
        self.weights_card: dict[str, Any] = {}  # the card of the run that made them ({}: none)
        self.lock_reason = ""  # why layer configs cannot change now ("" = they can)
        self.last_change = ""  # what the last config change did ("undo preset xnor", ...)
        self.last_search: SearchResult | None = None  # of the open model and weights
        self._undo: list[ConfigChange] = []
        self._redo: list[ConfigChange] = []
        self._samples: dict[int, DrawnSample] = {}

    # ------------------------------------------------------------------ model and data
    @property
    def model(self) -> nn.Module:
        """The live model (raises if none is open)."""
        if self.loaded is None:
            raise XnorlabError("no model is open")
        return self.loaded.model

    @property
    def input_shape(self) -> tuple[int, ...]:
        """``(C, H, W)`` of one input of the open model."""
        if self.loaded is None:
            raise XnorlabError("no model is open")
        return tuple(self.loaded.input_shape)

    @property
    def model_name(self) -> str:
        """The spec of the open model, or an empty string."""
        return self.loaded.spec if self.loaded is not None else ""

    @property
    def display_name(self) -> str:
        """The model as titles and reports name it: the spec, plus how its weights were
        changed in place (``demo:lenet (fine-tuned)``)."""
        name = self.model_name
        return f"{name} ({self.weights_note})" if name and self.weights_note else name

    def open_model(
        self, spec: str, trust: bool = False, modes: str | Mapping[str, Any] | None = None
    ) -> LoadedModel:
        """Load ``spec``, wrap its layers, apply ``modes`` (default: the modes stored with it).

        Everything is validated before the current model is replaced. Opens the model's default
        dataset when the current one does not fit its input shape.
        """
        loaded = _call_load_model(spec, trust)
        self.adopt(loaded, modes=modes)
        return loaded

    def adopt(self, loaded: LoadedModel, modes: str | Mapping[str, Any] | None = None) -> None:
        """Make an already-built ``LoadedModel`` (e.g. a training result) the current model."""
        model = loaded.model
        try:
            wrap_layers(model)
        except ValueError as exc:
            raise XnorlabError(f"cannot use model {loaded.spec!r}: {exc}") from None
        stored = loaded.modes if modes is None else modes
        mode_map = self._resolve_for(model, stored) if stored else {}
        macs = self._measure_macs(model, tuple(loaded.input_shape), loaded.spec)
        model.eval()
        for name, module in self._wrapped_of(model).items():
            if name in mode_map:
                module.config = module.config.updated(mode=mode_map[name])
        self.loaded, self.macs, self.weights_note, self.last_change = loaded, macs, "", ""
        self.weights_card = {}
        self._undo.clear()
        self._redo.clear()
        self.selected = None
        self._bump()
        self._clear_search()
        self.model_changed.emit()
        self._fit_dataset(loaded)

    def _measure_macs(self, model: nn.Module, shape: tuple[int, ...], spec: str) -> dict[str, int]:
        try:
            return layer_macs(model, shape)
        except Exception as exc:  # the first forward pass runs the file's own code: any error
            raise XnorlabError(
                f"model {spec!r} does not run on an input of shape {shape}: {exc}"
            ) from None

    @staticmethod
    def _resolve_for(model: nn.Module, modes: str | Mapping[str, Any]) -> dict[str, Mode]:
        if isinstance(modes, str):
            return preset_modes(model, modes)
        return validate_mode_map(model, modes)

    def _fit_dataset(self, loaded: LoadedModel) -> None:
        if self.dataset is not None and tuple(self.dataset.input_shape) == loaded.input_shape:
            return
        if self.dataset is not None:
            self.dataset, self.dataset_spec = None, None
            self._samples.clear()
            self.data_changed.emit()
        default = loaded.default_data
        if default and self.dataset_requested.n_slots:
            self.dataset_requested.emit(default)
        elif default:
            self.attempt(self.open_dataset, default)

    def open_dataset(self, spec: str) -> DatasetBundle:
        """Load dataset ``spec`` (see ``xnorlab.data.datasets``); it must fit the model's input."""
        bundle = load_dataset_for(spec, self.loaded)
        self.set_dataset(bundle, spec)
        return bundle

    def set_dataset(self, bundle: DatasetBundle, spec: str = "") -> None:
        """Use an already-loaded dataset bundle; validated against the open model first."""
        shape = tuple(bundle.input_shape)
        if self.loaded is not None and shape != self.input_shape:
            raise XnorlabError(
                f"dataset {spec or 'bundle'!r} gives inputs of shape {shape} but the model "
                f"expects {self.input_shape}"
            )
        self.dataset, self.dataset_spec = bundle, spec or "dataset"
        self._samples.clear()
        self._bump()
        self.data_changed.emit()

    @property
    def class_names(self) -> list[str]:
        """Class names of the model (or of the dataset when the model has none)."""
        if self.loaded is not None and self.loaded.class_names:
            return list(self.loaded.class_names)
        return list(self.dataset.class_names) if self.dataset is not None else []

    def sample_split(self) -> Dataset[tuple[Tensor, int]]:
        """The split samples are drawn from: validation, or training when validation is empty
        (a tiny image folder), since a few items beat none."""
        if self.dataset is None:
            raise XnorlabError("no dataset is open: open one (Ctrl+D)")
        split = self.dataset.val
        return self.dataset.train if _is_empty(split) else split

    def sample(self, n: int = DEFAULT_SAMPLE_SIZE) -> DrawnSample:
        """``n`` validation items drawn seeded and class-stratified (``SAMPLE_SEED``), with what
        they hold; cached until the data changes."""
        if n < 1:
            raise XnorlabError(f"sample size must be >= 1, got {n}")
        if n not in self._samples:
            inputs, labels, info = sample_tensors(self.sample_split(), n, SAMPLE_SEED)
            if self.loaded is not None and tuple(inputs.shape[1:]) != self.input_shape:
                raise XnorlabError(
                    f"dataset samples have shape {tuple(inputs.shape[1:])}, "
                    f"the model expects {self.input_shape}"
                )
            self._samples[n] = DrawnSample(inputs, labels, info)
        return self._samples[n]

    def sample_batch(self, n: int = DEFAULT_SAMPLE_SIZE) -> tuple[Tensor, Tensor]:
        """``(inputs, labels)`` of ``sample(n)``."""
        drawn = self.sample(n)
        return drawn.inputs, drawn.labels

    def activation_inputs(self, n: int = DEFAULT_SAMPLE_SIZE) -> ActivationInputs:
        """The inputs of the activation views: up to ``n`` dataset samples or calibration photos.

        With a dataset open: a stratified ``sample`` of ``whole_shares(n, classes)`` items
        (raises like it). Without one: up to ``n`` of the bundled calibration photos, converted
        to the model's input (cheap here: ``load()`` does the work), when the model takes
        ``(1 or 3, H, W)`` images; else (or without a model) ``InputKind.NONE``.
        """
        if self.dataset is not None:
            if n < 1:
                raise XnorlabError(f"sample size must be >= 1, got {n}")
            drawn = self.sample(whole_shares(n, len(self.dataset.class_names)))
            names = tuple(self.class_names)
            text = f"{self.dataset_spec}, {drawn.info.text(names)}"
            return ActivationInputs(
                InputKind.DATASET, text, len(drawn.inputs), batch=drawn.inputs,
                labels=drawn.labels, sample=drawn.info, class_names=names,
            )  # fmt: skip
        if n < 1:
            raise XnorlabError(f"sample size must be >= 1, got {n}")
        if self.loaded is None:
            return ActivationInputs(InputKind.NONE, "no model is open")
        shape = self.input_shape
        try:
            prep = calibration.calibration_preprocessing(shape, self.loaded.preprocessing)
        except XnorlabError:
            return ActivationInputs(InputKind.NONE, NO_INPUT_TEXT)
        count = min(n, calibration.PHOTO_COUNT)
        return ActivationInputs(
            InputKind.CALIBRATION, calibration.describe(count), count,
            input_shape=shape, preprocessing=prep,
        )  # fmt: skip

    def snapshot(self) -> nn.Module:
        """A weight-sharing copy of the live model for workers (see ``snapshot_model``)."""
        return snapshot_model(self.model)

    # ------------------------------------------------------------------ layers
    def layers(self) -> list[LayerInfo]:
        """Every binarizable layer with its current mode (empty without a model)."""
        return list_layers(self.loaded.model) if self.loaded is not None else []

    def layer_names(self) -> list[str]:
        """Names of the binarizable layers, first to last."""
        return [info.name for info in self.layers()]

    def fixed_layers(self) -> list[tuple[LayerInfo, str]]:
        """The Conv2d/Linear layers that stay float whatever the modes (e.g. the ``out_proj``
        that ``nn.MultiheadAttention`` uses by its weight), each with the reason."""
        if self.loaded is None:
            return []
        modules = dict(self.loaded.model.named_modules())
        fixed = []
        for name, reason in unbinarizable_layers(self.loaded.model).items():
            module = modules[name]
            weight, bias = module.weight, getattr(module, "bias", None)
            params = weight.numel() + (bias.numel() if isinstance(bias, Tensor) else 0)
            kind = "conv2d" if isinstance(module, nn.Conv2d) else "linear"
            info = LayerInfo(name, kind, tuple(weight.shape), params,
                             int(getattr(module, "groups", 1)), Mode.FLOAT, "")  # fmt: skip
            fixed.append((info, reason))
        return fixed

    @staticmethod
    def _wrapped_of(model: nn.Module) -> dict[str, Wrapped]:
        return {n: m for n, m in model.named_modules() if isinstance(m, BinarizableLayer)}

    def layer(self, name: str) -> Wrapped:
        """The wrapped layer ``name``; clear error if unknown."""
        wrapped = self._wrapped_of(self.model)
        if name not in wrapped:
            raise XnorlabError(f"no binarizable layer named {name!r}")
        return wrapped[name]

    def configs(self) -> dict[str, LayerConfig]:
        """Config of every switchable (wrapped) layer."""
        if self.loaded is None:
            return {}
        return {name: m.config for name, m in self._wrapped_of(self.loaded.model).items()}

    def config(self, name: str) -> LayerConfig:
        """Current config of layer ``name``."""
        return self.layer(name).config

    def modes(self) -> dict[str, Mode]:
        """Mode of every binarizable layer."""
        return {info.name: info.mode for info in self.layers()}

    def set_mode(self, name: str, mode: Mode | str) -> list[str]:
        """Switch one layer to ``mode``; returns the changed names (empty if unchanged)."""
        return self.set_modes({name: mode}, label=f"{name} -> {mode}")

    def set_modes(self, mapping: Mapping[str, Mode | str], label: str = "set modes") -> list[str]:
        """Switch several layers at once (one undo step)."""
        clean = validate_mode_map(self.model, mapping)
        configs = {name: self.layer(name).config.updated(mode=m) for name, m in clean.items()}
        return self._apply(configs, label)

    def apply_preset(self, preset: str) -> list[str]:
        """Apply ``paper``, ``paper-bwn``, ``xnor``, ``bwn`` or ``float`` to every layer."""
        return self.set_modes(preset_modes(self.model, preset), label=f"preset {preset}")

    def apply_pattern(self, pattern: str, mode: Mode | str) -> list[str]:
        """Set ``mode`` on every layer whose name matches the glob ``pattern``.

        Returns the changed names; raises if the pattern matches no layer.
        """
        names = [n for n in self.layer_names() if fnmatch.fnmatchcase(n, pattern.strip())]
        if not names:
            sample = ", ".join(self.layer_names()[:4])
            raise XnorlabError(f"pattern {pattern!r} matches no layer (layers: {sample}, ...)")
        return self.set_modes(dict.fromkeys(names, mode), label=f"{pattern} -> {mode}")

    def set_layer_config(self, name: str, **fields: Any) -> list[str]:
        """Change mode/scaling/pad_mode/weight_grad/clip/backend of one layer (undoable)."""
        return self.configure_layers([name], **fields)

    def configure_layers(self, names: Iterable[str] | None = None, **fields: Any) -> list[str]:
        """Change config fields of the named layers (all switchable layers when ``None``)."""
        targets = list(names) if names is not None else list(self._wrapped_of(self.model))
        try:
            configs = {n: self.layer(n).config.updated(**fields) for n in targets}
        except ValueError as exc:
            raise XnorlabError(f"invalid layer setting: {exc}") from None
        label = ", ".join(f"{k}={v}" for k, v in fields.items())
        return self._apply(configs, label)

    # ------------------------------------------------------------------ mode lock
    def lock_modes(self, reason: str) -> None:
        """Refuse every layer-config change until ``unlock_modes``; ``reason`` says why
        (e.g. "a training run uses the current modes")."""
        if not reason:
            raise XnorlabError("a mode lock needs a reason to show the user")
        self.lock_reason = reason
        self.lock_changed.emit(reason)

    def unlock_modes(self) -> None:
        """Allow layer-config changes again."""
        if self.lock_reason:
            self.lock_reason = ""
            self.lock_changed.emit("")

    @property
    def modes_locked(self) -> bool:
        return bool(self.lock_reason)

    def _check_unlocked(self) -> None:
        if self.lock_reason:
            raise XnorlabError(f"modes cannot change now: {self.lock_reason}")

    def _apply(
        self, configs: Mapping[str, LayerConfig], label: str, record: bool = True
    ) -> list[str]:
        self._check_unlocked()
        wrapped = self._wrapped_of(self.model)
        before = {n: wrapped[n].config for n in configs}
        changed = {n: c for n, c in configs.items() if before[n] != c}
        if not changed:
            return []
        for name, config in changed.items():
            wrapped[name].config = config
        if record:
            self._undo.append(ConfigChange(label, {n: before[n] for n in changed}, changed))
            del self._undo[: -self.max_undo]
            self._redo.clear()
        self.last_change = label
        self._bump()
        names = list(changed)
        self.modes_changed.emit(names)
        return names

    # ------------------------------------------------------------------ undo / redo
    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_label(self) -> str:
        """What ``undo`` would revert ("" when nothing)."""
        return self._undo[-1].label if self._undo else ""

    @property
    def redo_label(self) -> str:
        """What ``redo`` would re-apply ("" when nothing)."""
        return self._redo[-1].label if self._redo else ""

    def undo(self) -> list[str]:
        """Revert the last config change; returns the layers it touched."""
        if not self._undo:
            return []
        self._check_unlocked()
        step = self._undo.pop()
        self._redo.append(step)
        return self._apply(step.before, f"undo {step.label}", record=False)

    def redo(self) -> list[str]:
        """Re-apply the last undone change."""
        if not self._redo:
            return []
        self._check_unlocked()
        step = self._redo.pop()
        self._undo.append(step)
        return self._apply(step.after, f"redo {step.label}", record=False)

    # ------------------------------------------------------------------ search
    def begin_search(self, options: SearchOptions) -> SearchJob:
        """Lock the modes and return the job a worker runs (``SearchJob.run``); call
        ``end_search`` when it ends, whatever the outcome. Without a dataset it searches on
        crops of the bundled photos, as the views use them. Raises when there is no model,
        nothing to search on, or the modes are already locked by another run."""
        if self.loaded is None:
            raise XnorlabError("open a model first (Ctrl+O): there is nothing to search")
        if self.lock_reason:
            raise XnorlabError(f"cannot start a search now: {self.lock_reason}")
        options.validate()
        if self.dataset is None:
            job = self._photo_search(self.loaded, options)
        else:
            # Scored and confirmed on the split the views sample, fine-tuned on the training
            # split when that is another one, else on the items neither split took.
            split, train = self.sample_split(), self.dataset.train
            finetune = None if split is train or _is_empty(train) else train
            job = SearchJob(self.loaded, self.snapshot(), split, options, finetune)
        self.lock_modes(SEARCH_LOCK_REASON)
        return job

    def _photo_search(self, loaded: LoadedModel, options: SearchOptions) -> SearchJob:
        if options.finetune_epochs:
            raise XnorlabError(
                "fine-tuning needs labels, the bundled photos have none: open a dataset (Ctrl+D)"
            )
        try:
            calibration.calibration_preprocessing(self.input_shape, loaded.preprocessing)
        except XnorlabError as exc:
            raise XnorlabError(
                f"{self.model_name} has no dataset to score modes on and the bundled photos "
                f"do not fit it ({exc}): open a dataset (Ctrl+D)"
            ) from None
        return SearchJob(loaded, self.snapshot(), None, options, None)

    def end_search(self, job: SearchJob, result: SearchResult | None) -> bool:
        """Unlock the modes; keep ``result`` as ``last_search`` when the job's model is still
        open with the same weights (a result of another model is dropped). Returns whether it
        was kept."""
        if self.lock_reason == SEARCH_LOCK_REASON:
            self.unlock_modes()
        if result is None or self.loaded is not job.loaded:
            return False
        self.last_search = result
        self.search_changed.emit()
        return True

    def run_search(
        self, options: SearchOptions, *, progress: ProgressFn | None = None,
        should_cancel: CancelFn | None = None,
    ) -> SearchResult:  # fmt: skip
        """Search the open model's modes on the open dataset here, synchronously (the app runs
        ``begin_search``'s job in a worker instead); the result becomes ``last_search``."""
        job = self.begin_search(options)
        result: SearchResult | None = None
        try:
            result = job.run(progress=progress, should_cancel=should_cancel)
        finally:
            self.end_search(job, result)
        return result

    def search_points(self) -> list[tuple[str, FrontPoint]]:
        """The points of ``last_search`` a user can apply, named: the float point first
        (``"float"``) when the front does not hold its modes, then the front numbered from 1
        (empty without a search)."""
        found = self.last_search
        if found is None:
            return []
        named = [(str(number), point) for number, point in enumerate(found.front, start=1)]
        if all(point.modes != found.float_point.modes for point in found.front):
            named.insert(0, (FLOAT_POINT, found.float_point))
        return named

    def apply_search_point(self, index: int) -> list[str]:
        """Set the modes of ``search_points()[index]`` on the model (one undoable step)."""
        points = self.search_points()
        if not points:
            raise XnorlabError("no search result: run a search first (Search tab)")
        if not 0 <= index < len(points):
            raise XnorlabError(f"no search point {index} (the search has {len(points)})")
        name, point = points[index]
        return self.set_modes(dict(point.modes), label=search_point_label(name, point))

    @property
    def search_finetuned(self) -> bool:
        """Whether ``last_search`` holds weights fine-tuned for its chosen point."""
        found = self.last_search
        return found is not None and found.chosen is not None and found.finetuned_model is not None

    def adopt_search_finetuned(self) -> list[str]:
        """Apply the chosen modes of a fine-tuned search (one undoable step) with the weights
        fine-tuned for them, marked as changed like after training (which ends the search's
        answer: it measured the old weights). Returns the layers whose mode changed."""
        found, loaded = self.last_search, self.loaded
        if found is None or found.chosen is None or found.finetuned_model is None:
            raise XnorlabError(
                "no fine-tuned weights: run a search with fine-tune epochs > 0 first (Search tab)"
            )
        assert loaded is not None, "a search result belongs to the open model"
        self._check_unlocked()
        chosen, tuned = found.chosen, found.finetuned_model
        clean = validate_mode_map(loaded.model, dict(chosen.modes))
        name = next(n for n, point in self.search_points() if point.modes == chosen.modes)
        card = finetuned_meta(loaded, found, tuned, self.dataset_spec or "")["card"]
        load_state_into(loaded.model, tuned.state_dict(), "the search's fine-tuned weights")
        changed = self.set_modes(clean, label=f"{search_point_label(name, chosen)}, fine-tuned")
        self.mark_weights_changed("fine-tuned by search", card)
        return changed

    def _clear_search(self) -> None:
        if self.last_search is not None:
            self.last_search = None
            self.search_changed.emit()

    # ------------------------------------------------------------------ selection, errors
    def select(self, name: str | None) -> None:
        """Select a layer (``None`` clears); emits ``selection_changed`` only on change."""
        if name is not None and name not in self.layer_names():
            raise XnorlabError(f"no binarizable layer named {name!r}")
        if name != self.selected:
            self.selected = name
            self.selection_changed.emit(name)

    def attempt(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """Call ``func``; on ``XnorlabError`` emit ``error(message)`` and return ``None``."""
        try:
            return func(*args, **kwargs)
        except XnorlabError as exc:
            self.error.emit(str(exc))
            return None

    def mark_weights_changed(
        self, note: str = "modified", card: Mapping[str, Any] | None = None
    ) -> None:
        """Tell the views the live model's weights changed in place (after fine-tuning);
        ``note`` says how (``display_name`` shows it until another model is opened), ``card``
        describes the run that made them (``weights_card``)."""
        if self.loaded is None:
            raise XnorlabError("no model is open")
        self.weights_note = note
        self.weights_card = dict(card or {})
        self._bump()
        self._clear_search()
        self.weights_changed.emit()

    def _bump(self) -> None:
        self.revision += 1

    # ------------------------------------------------------------------ dropped files
    def open_paths(self, paths: Sequence[str | Path]) -> None:
        """Open dropped files: a model file opens the model, images go to ``images_dropped``.

        The model is loaded here, synchronously, unless something listens to
        ``model_requested`` (the GUI, which loads it off the GUI thread).

        Raises (state unchanged) when a file is missing, of an unknown kind, or nobody
        listens for images.
        """
        files = [Path(p) for p in paths]
        if not files:
            raise XnorlabError("nothing to open")
        for path in files:
            if not path.is_file():
                raise XnorlabError(f"not a file: {path}")
        models = [p for p in files if p.suffix.lower() in MODEL_SUFFIXES]
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        unknown = [p for p in files if p not in models and p not in images]
        if unknown:
            kinds = ", ".join(MODEL_SUFFIXES + IMAGE_SUFFIXES)
            raise XnorlabError(f"cannot open {unknown[0].name}: unsupported file type ({kinds})")
        if len(models) > 1:
            raise XnorlabError("drop one model file at a time")
        if images and self.images_dropped.n_slots == 0:
            raise XnorlabError("image prediction is not available in this window")
        if models and self.model_requested.n_slots:
            self.model_requested.emit(str(models[0]))  # the GUI loads it in a worker
        elif models:
            self.open_model(str(models[0]))
        if images:
            self.images_dropped.emit([str(p) for p in images])
