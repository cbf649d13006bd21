"""The user's own model code as a model spec: ``path/to/file.py:Class`` or ``package.module:Class``.

Naming code in a spec imports and runs it. That is the user's explicit choice, made where they
type or pick the spec; a model file that was built from such code only names it in the error
that says how to open it, it never makes xnorlab import anything.

``load_code_model(spec, options)`` imports the file or module, checks that ``Class`` is an
``nn.Module`` class, builds it with ``options.arch_kwargs`` and loads ``options.weights``:

* a state_dict in ``.pt``/``.pth`` (read with ``torch.load(weights_only=True)``, through
  ``checkpoint.read_checkpoint``) or ``.safetensors``;
* a checkpoint of ours (e.g. what ``xnorlab train FILE.py:Class`` wrote): its class names,
  preprocessing, default data and modes apply as well;
* a ``.xnor`` export of the same class (``xnor_file.load_xnor_into``).

One input's shape comes from ``options.input_shape``, else the class's ``input_shape``
attribute, else the weights' metadata; without any, one error says to give it. Class names come
from ``options.class_names``, else the weights' metadata, else they are the numbers ``0..K-1``.
Preprocessing is known only from our own metadata; without it a data set's own preprocessing
applies. The built model runs once on plain inputs (``schema.check_model_runs``) before it is
returned. Every failure is one ``XnorlabError`` line naming its cause.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from xnorlab.binary.surgery import current_modes
from xnorlab.common.errors import XnorlabError, quoted
from xnorlab.common.files import MIB, check_input_file, read_bounded
from xnorlab.common.jsonio import parse_json
from xnorlab.data.images import Preprocessing
from xnorlab.models import schema
from xnorlab.models.checkpoint import (
    MAX_CHECKPOINT_BYTES,
    apply_layer_settings,
    load_state_into,
    read_checkpoint,
)
from xnorlab.models.loaded import LoadedModel
from xnorlab.models.xnor_file import SUFFIX as XNOR_SUFFIX
from xnorlab.models.xnor_file import load_xnor_into

CODE_SUFFIX = ".py"
MAX_CODE_BYTES = 16 * MIB  # a model's source file; more is not source code
MAX_CLASS_NAMES_BYTES = 4 * MIB
MODULE_PREFIX = "xnorlab_user_code"  # sys.modules names of imported files: no clash with theirs
SHAPE_EXAMPLE = "1,28,28"


@dataclass(frozen=True)
class CodeSpec:
    """``source:class_name`` where ``source`` is a ``.py`` file or a dotted module name."""

    source: str
    class_name: str

    @property
    def is_file(self) -> bool:
        return self.source.lower().endswith(CODE_SUFFIX)

    @property
    def where(self) -> str:
        """How messages name the source: the file's name or the module."""
        return Path(self.source).name if self.is_file else self.source


@dataclass(frozen=True)
class CodeOptions:
    """What the user's code needs besides its spec (each ``None``/empty when not given)."""

    weights: str | None = None
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    input_shape: tuple[int, int, int] | None = None
    class_names: tuple[str, ...] | None = None

    def given(self) -> list[str]:
        """The fields that were given, by name."""
        values = {
            "weights": self.weights,
            "arch_kwargs": self.arch_kwargs or None,
            "input_shape": self.input_shape,
            "class_names": self.class_names,
        }
        return [name for name, value in values.items() if value is not None]


@dataclass
class _FromWeights:
    """What the weights file said besides its tensors (empty without one)."""

    class_names: list[str] = field(default_factory=list)
    preprocessing: Preprocessing | None = None
    input_shape: tuple[int, int, int] | None = None
    default_data: str | None = None
    card: dict[str, Any] = field(default_factory=dict)
    with_modes: bool = False


# --------------------------------------------------------------------------- parsing


def parse_code_spec(text: str) -> CodeSpec | None:
    """``CodeSpec`` of ``FILE.py:Class`` or ``package.module:Class``, else None (a name alone
    is not code). ``demo:lenet`` parses too: ``spec.code_spec_of`` applies the precedence."""
    source, sep, name = text.strip().rpartition(":")
    if not sep or not source or not name.isidentifier():
        return None
    if source.lower().endswith(CODE_SUFFIX) or all(p.isidentifier() for p in source.split(".")):
        return CodeSpec(source, name)
    return None


def parse_arch_kwargs(text: str) -> dict[str, Any]:
    """Keyword arguments of the class from JSON text: an object of plain JSON values."""
    data = parse_json(text, what="the value")
    if not isinstance(data, dict):
        raise XnorlabError(
            f'the value must be a JSON object of keyword arguments such as {{"width": 64}}, '
            f"got {quoted(text)}"
        )
    return data


def parse_input_shape(text: str) -> tuple[int, int, int]:
    """``C,H,W`` (whole numbers, within ``schema``'s bounds) as a tuple."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 3 or not all(part.isdigit() for part in parts):
        raise XnorlabError(
            f"the input shape must be C,H,W (three whole numbers, e.g. {SHAPE_EXAMPLE}), "
            f"got {quoted(text)}"
        )
    return schema.input_shape([int(part) for part in parts])


def read_class_names(path: str | Path) -> tuple[str, ...]:
    """Class names from a file: a JSON list of strings (``.json``) or one name per line (blank
    lines skipped); distinct, within ``schema``'s bounds."""
    source = Path(path).expanduser()
    what = "class names file"
    if source.suffix.lower() == ".json":
        raw = read_bounded(source, what=what, max_bytes=MAX_CLASS_NAMES_BYTES)
        names = schema.class_names(parse_json(raw, what=f"{what} {source}"))
    else:
        text = read_bounded(source, what=what, max_bytes=MAX_CLASS_NAMES_BYTES)
        try:
            lines = text.decode("utf-8").splitlines()
        except UnicodeDecodeError:
            raise XnorlabError(f"{what} {source} is not UTF-8 text") from None
        names = schema.class_names([line.strip() for line in lines if line.strip()])
    if not names:
        raise XnorlabError(f"{what} {source} names no class")
    seen: set[str] = set()
    for name in names:
        if name.lower() in seen:
            raise XnorlabError(f"{what} {source} names {quoted(name)} twice")
        seen.add(name.lower())
    return tuple(names)


# --------------------------------------------------------------------------- importing


def _failure(exc: BaseException) -> str:
    """``Type: 'message'``, the message on one line and cut short."""
    return f"{type(exc).__name__}: {quoted(' '.join(str(exc).split()), 120)}"


@contextmanager
def _first_on_path(folder: Path) -> Iterator[None]:
    """``folder`` first on ``sys.path`` while the user's code is imported, as when Python runs
    it: a file may import the modules beside it, a module is found from the current folder."""
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        if entry in sys.path:
            sys.path.remove(entry)


def _import_failed(what: str, exc: BaseException) -> XnorlabError:
    hint = ""
    if isinstance(exc, SystemExit):
        hint = " (does it run a script when imported? put that under if __name__ == '__main__')"
    return XnorlabError(f"importing {what} failed: {_failure(exc)}{hint}")


def _import_file(code: CodeSpec) -> ModuleType:
    path = check_input_file(code.source, what="model code file", max_bytes=MAX_CODE_BYTES)
    path = path.resolve()
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    stem = "".join(c if c.isalnum() else "_" for c in path.stem)
    name = f"{MODULE_PREFIX}.{stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise XnorlabError(f"cannot import {path.name} as Python code")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look their module up by name
    try:
        with _first_on_path(path.parent):
            spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # the user's code may raise anything at import
        del sys.modules[name]
        raise _import_failed(path.name, exc) from None
    return module


def _import_module(code: CodeSpec) -> ModuleType:
    try:
        with _first_on_path(Path.cwd()):
            return importlib.import_module(code.source)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if code.source == missing or code.source.startswith(f"{missing}."):
            raise XnorlabError(
                f"no module named {quoted(missing)} (looked in the current folder and the "
                f"installed packages; a file is named as path/to/file.py:{code.class_name})"
            ) from None
        raise _import_failed(code.source, exc) from None
    except (Exception, SystemExit) as exc:  # the user's code may raise anything at import
        raise _import_failed(code.source, exc) from None


def import_code(code: CodeSpec) -> ModuleType:
    """The imported file or module (runs the user's code)."""
    return _import_file(code) if code.is_file else _import_module(code)


def _module_classes(module: ModuleType) -> list[str]:
    return sorted(
        name
        for name, value in vars(module).items()
        if isinstance(value, type)
        and issubclass(value, nn.Module)
        and value.__module__ == module.__name__
    )


def model_class(module: ModuleType, code: CodeSpec) -> type[nn.Module]:
    """``code.class_name`` of ``module`` if it is an ``nn.Module`` class."""
    value = vars(module).get(code.class_name)
    if value is None:
        known = ", ".join(_module_classes(module)) or "none"
        raise XnorlabError(
            f"{code.where} has no class {quoted(code.class_name)} (its nn.Module classes: {known})"
        )
    if not isinstance(value, type):
        raise XnorlabError(
            f"{code.class_name} in {code.where} is a {type(value).__name__}, not an nn.Module class"
        )
    if not issubclass(value, nn.Module):
        bases = ", ".join(base.__name__ for base in value.__mro__[1:]) or "nothing"
        raise XnorlabError(
            f"{code.class_name} in {code.where} is not an nn.Module class (it derives from {bases})"
        )
    return value


def construct(cls: type[nn.Module], kwargs: dict[str, Any], code: CodeSpec) -> nn.Module:
    """``cls(**kwargs)``; whatever the constructor raises is one line."""
    try:
        return cls(**kwargs)
    except (Exception, SystemExit) as exc:  # the user's constructor may raise anything
        given = f" with --arch-kwargs {quoted(kwargs)}" if kwargs else ""
        raise XnorlabError(f"{code.class_name}(){given} failed: {_failure(exc)}") from None


# --------------------------------------------------------------------------- weights


def _from_meta(model: nn.Module, meta: dict[str, Any], source: str) -> _FromWeights:
    """What our checkpoint's (already checked) metadata adds; its modes are applied."""
    prep = schema.preprocessing(meta.get("preprocessing"))
    apply_layer_settings(model, meta.get("modes", {}), meta.get("layer_config", {}), source)
    return _FromWeights(
        class_names=schema.class_names(meta.get("class_names", [])),
        preprocessing=prep,
        input_shape=prep.input_shape if prep is not None else None,
        default_data=meta.get("default_data"),
        card=dict(meta.get("card", {})),
        with_modes=bool(meta.get("modes")),
    )


def _load_weights(model: nn.Module, path: str, trust: bool, spec: str) -> _FromWeights:
    """Load the weights file at ``path`` into ``model`` and return what else it said."""
    source = Path(path).expanduser()
    if source.suffix.lower() == XNOR_SUFFIX:
        packed = load_xnor_into(source, model, spec)
        return _FromWeights(
            class_names=packed.class_names,
            preprocessing=packed.preprocessing,
            input_shape=packed.input_shape,
            default_data=packed.default_data,
            card=packed.card,
        )
    check_input_file(source, what="weights file", max_bytes=MAX_CHECKPOINT_BYTES)
    ckpt = read_checkpoint(source, trust)
    if ckpt.module is not None:
        raise XnorlabError(
            f"--weights {source.name} holds a whole model, not a state_dict: open it as the "
            f"model itself (xnorlab eval {source} ...)"
        )
    assert ckpt.state_dict is not None  # read_checkpoint gives a module or a state_dict
    load_state_into(model, ckpt.state_dict, f"weights {source.name}")
    return _from_meta(model, ckpt.meta, source.name)


def _class_shape(cls: type[nn.Module], code: CodeSpec) -> tuple[int, int, int] | None:
    value = getattr(cls, "input_shape", None)  # the class's own convention, like our demos'
    if value is None:
        return None
    try:
        return schema.input_shape(list(value) if isinstance(value, (tuple, list)) else value)
    except XnorlabError as exc:
        raise XnorlabError(f"{code.class_name}.input_shape: {exc}") from None


def _input_shape(
    options: CodeOptions, cls: type[nn.Module], found: _FromWeights, code: CodeSpec
) -> tuple[int, int, int]:
    shape = options.input_shape or _class_shape(cls, code) or found.input_shape
    if shape is None:
        raise XnorlabError(
            f"{code.class_name} does not say what input it takes: give --input-shape C,H,W "
            f"(e.g. {SHAPE_EXAMPLE}) or an input_shape class attribute"
        )
    return shape


def code_card(spec: str, options: CodeOptions) -> dict[str, Any]:
    """The card's ``code`` entry: how to build the module tree again (spec and arguments)."""
    return {"spec": spec, "kwargs": dict(options.arch_kwargs)}


def load_code_model(
    spec: str, code: CodeSpec, options: CodeOptions, trust: bool = False
) -> LoadedModel:
    """Import, build, load weights and check the user's model (see the module docstring).

    ``trust`` lets a weights file that is a whole pickle load (it can run code)."""
    cls = model_class(import_code(code), code)
    model = construct(cls, options.arch_kwargs, code)
    found = _FromWeights()
    if options.weights is not None:
        found = _load_weights(model, options.weights, trust, spec)
    shape = _input_shape(options, cls, found, code)
    prep = found.preprocessing
    if prep is not None and prep.input_shape != shape:
        prep = None  # made for another input size: the data's own preprocessing applies
    names = list(options.class_names or found.class_names)
    try:
        classes = schema.check_model_runs(model, shape, names, prep)
    except XnorlabError as exc:
        raise XnorlabError(f"{spec}: {exc}") from None
    card = {**found.card, "code": code_card(spec, options)}
    if options.weights is not None:
        card["weights"] = Path(options.weights).name
    return LoadedModel(
        spec=spec,
        model=model.eval(),
        input_shape=shape,
        class_names=names or [str(i) for i in range(classes)],
        preprocessing=prep,
        modes=current_modes(model) if found.with_modes else {},
        default_data=found.default_data,
        card=card,
        arch=spec,
    )


def plain_preprocessing(shape: tuple[int, int, int]) -> Preprocessing:
    """Images as pixels in ``[0, 1]`` stretched to ``shape`` (no normalisation): what a model
    that names no preprocessing gets for image files (``ToTensor``'s convention)."""
    channels, height, width = shape
    if channels not in (1, 3):
        raise XnorlabError(
            f"images become 1- or 3-channel inputs; this model takes {channels} channels"
        )
    return Preprocessing(
        channels=channels, height=height, width=width, mean=(0.0,) * channels,
        std=(1.0,) * channels,
    )  # fmt: skip
