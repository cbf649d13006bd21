"""Checks of what a model file says about itself, made before anything is built or allocated.

A model file (``.xnor``, ``.pt``, ``.safetensors``, ``.ts``) carries metadata a user or an
attacker can edit: class counts, input sizes, normalisation constants, layer settings, a
safetensors header with tensor shapes and offsets. Every number is checked against a bound and
every float for finiteness here, so a crafted file ends as one ``MetadataError`` line instead
of a huge allocation, an overflow, a NaN that flows into predictions or an error deep in torch.
After the model is built, ``check_model_runs`` runs it once on plain inputs of its own input
shape (zeros, the darkest and the brightest image), which turns any remaining inconsistency (a stride that does not fit the BatchNorm sizes,
an input size too small for the pooling) into one line as well.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xnorlab.binary.layers import LayerConfig
from xnorlab.binary.modes import Mode
from xnorlab.common.errors import XnorlabError, quoted
from xnorlab.common.files import MIB
from xnorlab.common.jsonio import MAX_JSON_BYTES, MAX_JSON_DEPTH, parse_json
from xnorlab.data.images import RESIZE_RULES, Preprocessing

# Bounds: generous for every real classifier, small enough that building the model, a batch of
# one input and the class list fit in memory and one forward takes seconds at most.
MAX_CLASSES = 100_000  # ImageNet-21k has 21,841
MAX_NAME_CHARS = 200  # one class or layer name
MAX_TEXT_CHARS = 4096  # a spec, a data set name or path
MAX_INPUT_SIDE = 1024  # pixels of an input's height or width
MAX_INPUT_CHANNELS = 64
MAX_INPUT_ELEMENTS = 3 * 1024 * 1024  # C * H * W of one input
MAX_LAYERS = 10_000
MAX_NORM_ABS = 1e6  # |mean| and std of the input normalisation
MIN_NORM_STD = 1e-6  # (x - mean) / std must stay finite
MAX_CLIP = 1e6
MAX_JSON_NODES = 1_000_000  # values in a metadata record
MAX_HEADER_BYTES = 16 * MIB  # safetensors header (JSON with every tensor's dtype, shape, offsets)
MAX_TENSORS = 100_000

# Element sizes of the safetensors dtypes the files hold; other dtypes are refused.
SAFETENSORS_DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
    "BOOL": 1,
}  # fmt: skip
LAYER_CONFIG_KEYS = frozenset(("mode", "scaling", "pad_mode", "weight_grad", "clip", "backend"))
PREPROCESSING_KEYS = frozenset(
    ("channels", "height", "width", "mean", "std", "resize", "light_on_dark", "extra")
)


class MetadataError(XnorlabError):
    """A model file's metadata breaks a rule (the message names the field and the rule)."""


# -------------------------------------------------------------------------------- scalars


def whole(value: Any, name: str, low: int, high: int) -> int:
    """``value`` if it is an integer (not a bool) with ``low <= value <= high``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise MetadataError(f"{name} must be a whole number, got {quoted(value)}")
    if not low <= value <= high:
        raise MetadataError(f"{name} {quoted(value)} is outside {low}..{high}")
    return value


def number(value: Any, name: str, low: float, high: float) -> float:
    """``value`` as a float if it is a finite number (not a bool) in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MetadataError(f"{name} must be a number, got {quoted(value)}")
    result = float(value)
    if not math.isfinite(result):
        raise MetadataError(f"{name} must be finite, got {quoted(value)}")
    if not low <= result <= high:
        raise MetadataError(f"{name} {quoted(value)} is outside [{low}, {high}]")
    return result


def text(value: Any, name: str, max_chars: int = MAX_TEXT_CHARS) -> str:
    """``value`` if it is a string of at most ``max_chars`` characters."""
    if not isinstance(value, str):
        raise MetadataError(f"{name} must be a string, got {quoted(value)}")
    if len(value) > max_chars:
        raise MetadataError(f"{name} is {len(value)} characters long, over {max_chars}")
    return value


def optional_text(value: Any, name: str) -> str | None:
    return None if value is None else text(value, name)


def whole_list(value: Any, name: str, length: int, low: int, high: int) -> tuple[int, ...]:
    """A list of exactly ``length`` whole numbers, each in ``low..high``."""
    if not isinstance(value, list) or len(value) != length:
        raise MetadataError(f"{name} must be a list of {length} whole numbers, got {quoted(value)}")
    return tuple(whole(v, f"{name}[{i}]", low, high) for i, v in enumerate(value))


def record(value: Any, name: str) -> dict[str, Any]:
    """``value`` if it is a JSON object (a dict with string keys)."""
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise MetadataError(f"{name} must be a JSON object, got {quoted(value)}")
    return value


def plain_json(value: Any, name: str) -> Any:
    """``value`` if it holds only JSON values (finite numbers), at most ``MAX_JSON_DEPTH`` deep
    and ``MAX_JSON_NODES`` values; checked without recursion (a crafted record can be deep)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    nodes = 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > MAX_JSON_NODES:
            raise MetadataError(f"{name} holds more than {MAX_JSON_NODES} values")
        if isinstance(item, (dict, list)) and depth >= MAX_JSON_DEPTH:
            raise MetadataError(f"{name} is nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(item, dict):
            if not all(isinstance(k, str) for k in item):
                raise MetadataError(f"{name} has a key that is not a string")
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise MetadataError(f"{name} holds a non-finite number ({item})")
        elif item is not None and not isinstance(item, (str, int, float, bool)):
            raise MetadataError(f"{name} holds a {type(item).__name__}, not a JSON value")
    return value


def parse_record(text_value: Any, what: str) -> dict[str, Any]:
    """A JSON object parsed from metadata text (bounded size and depth, finite numbers only)."""
    if not isinstance(text_value, (str, bytes)):
        raise MetadataError(f"{what} is not JSON text")
    if len(text_value) > MAX_JSON_BYTES:
        raise MetadataError(f"{what} is {len(text_value)} characters long, over {MAX_JSON_BYTES}")
    data = parse_json(text_value, what=what)
    if not isinstance(data, dict):
        raise MetadataError(f"{what} is not a JSON object")
    plain_json(data, what)
    return data


# ------------------------------------------------------------------------------- fields


def class_count(value: Any, name: str = "num_classes") -> int | None:
    """``None`` (the architecture's default) or a class count in ``2..MAX_CLASSES``."""
    return None if value is None else whole(value, name, 2, MAX_CLASSES)


def class_names(value: Any) -> list[str]:
    """A list of at most ``MAX_CLASSES`` strings of at most ``MAX_NAME_CHARS`` characters."""
    if not isinstance(value, list):
        raise MetadataError(f"class_names must be a list of strings, got {quoted(value)}")
    if len(value) > MAX_CLASSES:
        raise MetadataError(f"class_names has {len(value)} entries, over {MAX_CLASSES}")
    return [text(v, f"class name {i}", MAX_NAME_CHARS) for i, v in enumerate(value)]


def input_shape(value: Any) -> tuple[int, int, int]:
    """``(C, H, W)``: channels ``1..MAX_INPUT_CHANNELS``, sides ``1..MAX_INPUT_SIDE``."""
    if not isinstance(value, list) or len(value) != 3:
        raise MetadataError(f"input_shape must be [C, H, W], got {quoted(value)}")
    channels = whole(value[0], "input_shape channels", 1, MAX_INPUT_CHANNELS)
    height = whole(value[1], "input_shape height", 1, MAX_INPUT_SIDE)
    width = whole(value[2], "input_shape width", 1, MAX_INPUT_SIDE)
    if channels * height * width > MAX_INPUT_ELEMENTS:
        raise MetadataError(f"input_shape {quoted(value)} is over {MAX_INPUT_ELEMENTS} values")
    return (channels, height, width)


def _norm_values(value: Any, name: str, channels: int, low: float) -> tuple[float, ...]:
    if not isinstance(value, list) or len(value) != channels:
        raise MetadataError(f"preprocessing {name} must list {channels} numbers")
    return tuple(number(v, f"preprocessing {name}", low, MAX_NORM_ABS) for v in value)


def preprocessing(value: Any) -> Preprocessing | None:
    """``None`` or a checked ``Preprocessing`` record (known keys, bounded sizes, finite
    normalisation with ``std >= MIN_NORM_STD``)."""
    if value is None:
        return None
    data = record(value, "preprocessing")
    unknown = sorted(set(data) - PREPROCESSING_KEYS)
    if unknown:
        raise MetadataError(f"preprocessing has an unknown key {quoted(unknown[0])}")
    missing = sorted({"channels", "height", "width", "mean", "std"} - set(data))
    if missing:
        raise MetadataError(f"preprocessing lacks {quoted(missing[0])}")
    channels = data["channels"]
    if isinstance(channels, bool) or channels not in (1, 3):
        raise MetadataError(f"preprocessing channels must be 1 or 3, got {quoted(channels)}")
    resize = data.get("resize", "stretch")
    if resize not in RESIZE_RULES:
        raise MetadataError(f"preprocessing resize must be one of {', '.join(RESIZE_RULES)}")
    light = data.get("light_on_dark", False)
    if not isinstance(light, bool):
        raise MetadataError("preprocessing light_on_dark must be true or false")
    try:
        return Preprocessing(
            channels=int(channels),
            height=whole(data["height"], "preprocessing height", 1, MAX_INPUT_SIDE),
            width=whole(data["width"], "preprocessing width", 1, MAX_INPUT_SIDE),
            mean=_norm_values(data["mean"], "mean", channels, -MAX_NORM_ABS),
            std=_norm_values(data["std"], "std", channels, MIN_NORM_STD),
            resize=resize,
            light_on_dark=light,
            extra=dict(plain_json(record(data.get("extra", {}), "preprocessing extra"), "extra")),
        )
    except XnorlabError as exc:
        raise MetadataError(str(exc)) from None


def mode_map(value: Any, name: str = "modes") -> dict[str, Mode]:
    """A JSON object of at most ``MAX_LAYERS`` layer names -> known modes."""
    data = record(value, name)
    if len(data) > MAX_LAYERS:
        raise MetadataError(f"{name} names {len(data)} layers, over {MAX_LAYERS}")
    modes: dict[str, Mode] = {}
    for layer, mode in data.items():
        text(layer, f"{name} layer name", MAX_NAME_CHARS)
        try:
            modes[layer] = Mode.parse(text(mode, f"{name}[{quoted(layer)}]", MAX_NAME_CHARS))
        except ValueError as exc:
            raise MetadataError(f"{name}[{quoted(layer)}]: {exc}") from None
    return modes


def layer_config(value: Any, name: str) -> LayerConfig:
    """A ``LayerConfig`` from a stored record: known keys and values, finite ``clip``."""
    data = record(value, f"layer {quoted(name)} config")
    unknown = sorted(set(data) - LAYER_CONFIG_KEYS)
    if unknown:
        raise MetadataError(f"layer {quoted(name)} config has an unknown key {quoted(unknown[0])}")
    fields: dict[str, Any] = {}
    for key, item in data.items():
        if key == "clip":
            fields[key] = number(item, f"layer {quoted(name)} clip", 0.0, MAX_CLIP)
        else:
            fields[key] = text(item, f"layer {quoted(name)} {key}", MAX_NAME_CHARS)
    try:
        return LayerConfig.create(**fields)
    except ValueError as exc:
        raise MetadataError(f"layer {quoted(name)} config: {exc}") from None


def layer_configs(value: Any, name: str = "layer_config") -> dict[str, LayerConfig]:
    """A JSON object of at most ``MAX_LAYERS`` layer names -> checked ``LayerConfig``."""
    data = record(value, name)
    if len(data) > MAX_LAYERS:
        raise MetadataError(f"{name} names {len(data)} layers, over {MAX_LAYERS}")
    return {
        text(k, f"{name} layer name", MAX_NAME_CHARS): layer_config(v, k) for k, v in data.items()
    }


# --------------------------------------------------------------------------- safetensors


def _tensor_entry(key: str, entry: Any, data_bytes: int) -> None:
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise MetadataError(f"tensor {quoted(key)} has a malformed header entry")
    size = SAFETENSORS_DTYPE_BYTES.get(entry["dtype"]) if isinstance(entry["dtype"], str) else None
    if size is None:
        raise MetadataError(
            f"tensor {quoted(key)} has an unsupported dtype {quoted(entry['dtype'])}"
        )
    shape = entry["shape"]
    if not isinstance(shape, list) or len(shape) > 8:
        raise MetadataError(f"tensor {quoted(key)} has a malformed shape")
    count = 1
    for dim in shape:
        count *= whole(dim, f"tensor {quoted(key)} shape", 0, data_bytes)
    offsets = entry["data_offsets"]
    if not isinstance(offsets, list) or len(offsets) != 2:
        raise MetadataError(f"tensor {quoted(key)} has malformed data offsets")
    begin = whole(offsets[0], f"tensor {quoted(key)} offset", 0, data_bytes)
    end = whole(offsets[1], f"tensor {quoted(key)} offset", begin, data_bytes)
    if end - begin != count * size:
        raise MetadataError(f"tensor {quoted(key)}'s bytes do not match its shape and dtype")


def safetensors_header(head: bytes, file_bytes: int) -> dict[str, Any]:
    """The checked header of a safetensors file of ``file_bytes`` bytes whose start is
    ``head`` (at least the 8 length bytes and the header): a bounded length inside the file, a
    JSON object whose tensor entries have known dtypes and offsets inside the data that match
    their shapes. Nothing is allocated from what the header claims."""
    if file_bytes < 10 or len(head) < 8:
        raise MetadataError(f"only {file_bytes} bytes")
    header_bytes = int.from_bytes(head[:8], "little")
    if not 2 <= header_bytes <= min(MAX_HEADER_BYTES, file_bytes - 8, len(head) - 8):
        raise MetadataError(f"its header length {header_bytes} does not fit its {file_bytes} bytes")
    header = parse_json(head[8 : 8 + header_bytes], what="the header")
    if not isinstance(header, dict):
        raise MetadataError("the header is not a JSON object")
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    if len(tensors) > MAX_TENSORS:
        raise MetadataError(f"the header lists {len(tensors)} tensors, over {MAX_TENSORS}")
    data_bytes = file_bytes - 8 - header_bytes
    for key, entry in tensors.items():
        _tensor_entry(key, entry, data_bytes)
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise MetadataError("the header's __metadata__ is not a map of strings")
    return header


def read_safetensors_header(path: Path, file_bytes: int) -> dict[str, Any]:
    """``safetensors_header`` of the file at ``path``, reading only its header."""
    try:
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            head = size.to_bytes(8, "little") + handle.read(min(size, MAX_HEADER_BYTES))
    except OSError as exc:
        raise MetadataError(f"cannot read it: {exc.strerror or exc}") from None
    return safetensors_header(head, file_bytes)


# ------------------------------------------------------------------------------- running


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception message, whitespace collapsed, cut short."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines[0].split())[:160] if lines else type(exc).__name__


def probe_inputs(shape: tuple[int, int, int], prep: Preprocessing | None) -> torch.Tensor:
    """Three inputs of ``shape``: zeros and the darkest and brightest images after
    normalisation (``-1`` and ``+1`` without a preprocessing)."""
    dark, bright = torch.zeros(shape), torch.ones(shape)
    if prep is not None:
        dark, bright = prep.normalize(dark), prep.normalize(bright)
    else:
        dark = -bright
    return torch.stack([torch.zeros(shape), dark, bright])


def check_model_runs(
    model: nn.Module,
    shape: tuple[int, int, int],
    names: list[str],
    prep: Preprocessing | None = None,
) -> int:
    """Run ``model`` (eval mode, no grad) once on ``probe_inputs``; return its class count.

    Raises ``MetadataError`` when it fails, does not give one finite row of class scores per
    input, or gives another count than ``names`` (when names are given).
    """
    model.eval()
    inputs = probe_inputs(shape, prep)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NaN binarized, ...: the outcome is judged below
            output = model(inputs)
    except Exception as exc:  # any failure of a file-described model is the file's fault
        raise MetadataError(
            f"the model does not run on its input {list(shape)}: {first_line(exc)}"
        ) from None
    rows = len(inputs)
    if not isinstance(output, torch.Tensor) or output.dim() != 2 or output.shape[0] != rows:
        kind = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise MetadataError(f"the model gives {kind} for {rows} inputs, not class scores")
    if not output.is_floating_point() or not bool(torch.isfinite(output).all()):
        raise MetadataError(f"the model gives NaN or infinite scores on plain {list(shape)} inputs")
    classes = int(output.shape[1])
    if names and len(names) != classes:
        raise MetadataError(f"it names {len(names)} classes but the model outputs {classes}")
    return classes
