"""The compact ``.xnor`` model file: packed binary weights, float layers and metadata.

Format (``FORMAT_VERSION`` 2, described in ``docs/xnor-format.md``): one safetensors file (no
pickle). Tensors:

* every BWN/XNOR layer ``L``: ``L.bits`` (int64 words ``(C_out, taps, ceil(C_in / 64))``, the
  native engine's canonical layout, ``xnorlab.engine.packed``), ``L.alpha`` (float32, one per
  output channel), ``L.bias`` (float32, if the layer has one);
* every other entry of the model's ``state_dict`` under its own key (float layers, BatchNorm
  parameters and running statistics, ...).

The safetensors metadata holds one key, ``"xnorlab"``: a JSON object with ``format``
(``"xnorlab-packed"``), ``format_version``, ``xnorlab_version``, ``spec`` (where the model came
from), ``architecture`` (``{"kind": "demo"|"binary"|"torchvision", "name", "num_classes"}``: enough to
rebuild the module tree without any weight file; or ``{"kind": "code", "name": "FILE.py:Class",
"kwargs", "num_classes"}`` for the user's own class), ``input_shape``, ``class_names``,
``preprocessing``, ``modes`` and ``layers`` (per binary layer: kind, weight_shape, config,
conv geometry).

``load_xnor`` rebuilds the architecture with random init, overwrites every float tensor, and
replaces the binary layers by ``PackedConv2d`` / ``PackedLinear`` built from the stored words
(``from_state``: no unpacking to floats and packing again). A file of the user's own class is
never rebuilt from its name (that would import code a file names): ``load_xnor`` says how to
open it, and ``load_xnor_into`` attaches it to an instance the user's spec built.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save
from torch import Tensor, nn

from xnorlab import engine
from xnorlab._version import __version__
from xnorlab.binary.layers import BinarizableLayer, LayerConfig
from xnorlab.binary.modes import Mode
from xnorlab.binary.surgery import current_modes, iter_binarizable
from xnorlab.common.atomic import atomic_write_bytes
from xnorlab.common.errors import XnorlabError, quoted
from xnorlab.common.files import read_bounded
from xnorlab.data.images import Preprocessing
from xnorlab.engine import KernelInputError, KernelTypeError, PackedConv2dWeight, PackedLinearWeight
from xnorlab.models import demo as models
from xnorlab.models import schema
from xnorlab.models.ensemble import ARCH_PREFIX, parse_ensemble_arch
from xnorlab.models.loaded import LoadedModel
from xnorlab.models.packed_layers import PackedConv2d, PackedLinear, PackedWeight, has_packed_layers
from xnorlab.models.schema import MetadataError
from xnorlab.models.xresnet import BINARY_ARCHITECTURES
from xnorlab.models.zoo import build_arch, torchvision_architectures

FORMAT = "xnorlab-packed"
FORMAT_VERSION = 2
SUFFIX = ".xnor"
# The engine's word layout (``layout_version`` of ``to_state``) that this format version stores:
# an engine with another layout refuses these words instead of misreading them.
WORDS_LAYOUT = 1
PACKED_KEYS = ("bits", "alpha", "bias")  # tensors of a binary layer ``L``: ``L.bits``, ...


class XnorFileError(XnorlabError):
    """A ``.xnor`` file cannot be written or read (corrupt, truncated, wrong version, ...)."""


# ------------------------------------------------------------------------- architecture


def _num_classes(model: nn.Module) -> int | None:
    linears = [m for _, m in iter_binarizable(model) if isinstance(m, nn.Linear)]
    return int(linears[-1].out_features) if linears else None


def architecture_of(loaded: LoadedModel) -> dict[str, Any] | None:
    """How to rebuild ``loaded.model``'s module tree without weights, or None if unknown.

    Uses ``loaded.arch`` (a demo or torchvision name, or the user's code spec when the card's
    ``code`` entry names it too); without it, demo nets are recognised by class and torchvision
    nets by their module and the spec's name.
    """
    model = loaded.model
    classes = _num_classes(model)
    code = loaded.card.get("code")
    if isinstance(code, dict) and code.get("spec") == loaded.arch:  # models.user_code's card
        return {"kind": CODE_KIND, "name": loaded.arch, "kwargs": code.get("kwargs", {}),
                "num_classes": classes}  # fmt: skip
    name = getattr(loaded, "arch", "") or ""
    if not name:
        by_class = [n for n, cls in models.ARCHITECTURES.items() if type(model) is cls]
        from_spec = loaded.spec.strip().split(":", 1)[0]
        if by_class:
            name = by_class[0]
        elif type(model).__module__.startswith("torchvision.models"):
            name = from_spec
    if name.startswith(ARCH_PREFIX):
        return _ensemble_entry(name, classes)
    if name in models.ARCHITECTURES:
        return {"kind": "demo", "name": name, "num_classes": classes}
    if name in BINARY_ARCHITECTURES:
        return {"kind": BINARY_KIND, "name": name, "num_classes": classes}
    if name in torchvision_architectures():
        return {"kind": "torchvision", "name": name, "num_classes": classes}
    return None


def _ensemble_entry(name: str, classes: int | None) -> dict[str, Any] | None:
    """An ensemble (``models.ensemble``): its name rebuilds it; ``member`` and ``members``
    list what it holds (checked against the name when read)."""
    parsed = parse_ensemble_arch(name)
    if parsed is None:
        return None
    return {"kind": ENSEMBLE_KIND, "name": name, "member": parsed[0], "members": parsed[1],
            "num_classes": classes}  # fmt: skip


# ---------------------------------------------------------------------------- metadata


def _preprocessing_json(loaded: LoadedModel) -> Any:
    prep = getattr(loaded, "preprocessing", None)
    return prep.to_json() if prep is not None and hasattr(prep, "to_json") else None


CARD_KEYS_DROPPED = ("history",)  # per-epoch training curves: kilobytes, not needed to run


def _compact_card(card: dict[str, Any]) -> dict[str, Any]:
    """The model card without its training history (the export stays small)."""
    return {k: v for k, v in card.items() if k not in CARD_KEYS_DROPPED}


def _json_safe(value: Any) -> Any:
    """``value`` if it survives a JSON round trip, else its string."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value


def _layer_entry(module: BinarizableLayer) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "kind": "conv2d" if isinstance(module, nn.Conv2d) else "linear",
        "weight_shape": list(module.weight.shape),
        "has_bias": module.bias is not None,
        "config": module.config.to_json(),
    }
    if isinstance(module, nn.Conv2d):
        entry["geometry"] = {
            "stride": list(module.stride),
            "padding": module.padding if isinstance(module.padding, str) else list(module.padding),
            "dilation": list(module.dilation),
            "groups": module.groups,
            "padding_mode": module.padding_mode,
        }
    return entry


def binary_layers(model: nn.Module) -> dict[str, BinarizableLayer]:
    """Name -> wrapper of every layer in BWN or XNOR mode."""
    return {
        name: module
        for name, module in iter_binarizable(model)
        if isinstance(module, BinarizableLayer) and module.mode is not Mode.FLOAT
    }


def _metadata(model: nn.Module, loaded: LoadedModel, arch: dict[str, Any] | None) -> str:
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "xnorlab_version": __version__,
        "spec": loaded.spec,
        "architecture": arch,
        "input_shape": list(loaded.input_shape),
        "class_names": list(loaded.class_names),
        "preprocessing": _preprocessing_json(loaded),
        "default_data": getattr(loaded, "default_data", None),
        "card": _json_safe(_compact_card(getattr(loaded, "card", None) or {})),
        "modes": {name: str(mode) for name, mode in current_modes(model).items()},
        "layers": {name: _layer_entry(m) for name, m in binary_layers(model).items()},
    }
    return json.dumps(meta, sort_keys=True)


# ------------------------------------------------------------------------------ writing


def _pack_layer(module: BinarizableLayer) -> PackedWeight:
    """The engine's packed weight of ``module``: sign words, ``alpha = mean |W|``, bias."""
    weight = module.weight.detach().float()
    bias = module.bias.detach().float() if module.bias is not None else None
    if isinstance(module, nn.Conv2d):
        return engine.pack_conv2d_weight(weight, bias)
    return engine.pack_linear_weight(weight, bias)


def packed_tensors(model: nn.Module) -> dict[str, Tensor]:
    """Every tensor of the file: packed binary layers plus the rest of the ``state_dict``."""
    tensors: dict[str, Tensor] = {}
    skip = set()
    for name, module in binary_layers(model).items():
        prefix = f"{name}." if name else ""
        state = _pack_layer(module).to_state()
        if state["layout_version"].tolist() != [WORDS_LAYOUT]:
            raise XnorFileError(
                f"the engine packs layout {state['layout_version'].tolist()}; .xnor format "
                f"{FORMAT_VERSION} stores layout {WORDS_LAYOUT}"
            )
        for key in PACKED_KEYS:
            if key in state:
                tensors[f"{prefix}{key}"] = state[key].contiguous()
        skip.update({f"{prefix}weight", f"{prefix}bias"})
    for key, value in model.state_dict().items():
        if key not in skip:
            tensors[key] = value.detach().clone().contiguous()
    return tensors


def encode_xnor(
    model: nn.Module, loaded: LoadedModel, *, require_architecture: bool = True
) -> bytes:
    """The bytes of the ``.xnor`` file of ``model`` (binarized in place by ``binarize_model``).

    ``loaded`` supplies spec, input shape, class names and preprocessing. Raises
    ``XnorFileError`` when the architecture cannot be described (and ``require_architecture``).
    """
    if has_packed_layers(model):
        raise XnorFileError(
            f"{loaded.spec} is already a packed .xnor model (its float weights are gone): "
            "copy the file instead of exporting it again"
        )
    arch = architecture_of(dataclasses.replace(loaded, model=model))
    if arch is None and require_architecture:
        raise XnorFileError(
            f"cannot export {loaded.spec!r}: only demo and torchvision architectures can be "
            f"rebuilt from a .xnor file ({type(model).__name__} is neither)"
        )
    data: bytes = save(packed_tensors(model), metadata={"xnorlab": _metadata(model, loaded, arch)})
    return data


def export_xnor(model: nn.Module, path: str | Path, loaded: LoadedModel) -> int:
    """Write ``model`` as a ``.xnor`` file (atomically); return its size in bytes."""
    if Path(path).suffix != SUFFIX:
        raise XnorFileError(f"the output file must end in {SUFFIX}, got {Path(path).name!r}")
    data = encode_xnor(model, loaded)
    atomic_write_bytes(path, data)
    return len(data)


# ------------------------------------------------------------------------------ reading

# A .xnor file is read whole; no export of a torchvision classifier comes near this size, and a
# bound keeps a wrong path from reading gigabytes.
MAX_XNOR_BYTES = 4 << 30
LAYER_KINDS = ("conv2d", "linear")
CODE_KIND = "code"  # the user's own class: attached by load_xnor_into, never imported by name
ENSEMBLE_KIND = "ensemble"  # K members of one architecture (models.ensemble), rebuilt by name
BINARY_KIND = "binary"  # xnorlab's binary architectures (models.xresnet), rebuilt by name
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")  # nn.Conv2d's padding_mode
PADDING_WORDS = ("same", "valid")
MAX_WEIGHT_DIM = 1 << 20  # one dimension of a binary layer's weight
MAX_GEOMETRY = 64  # stride, padding and dilation of a binary conv, per side


@dataclass(frozen=True)
class Architecture:
    """Which module tree to rebuild: a demo net or a torchvision classifier, by name, or the
    user's class (kind ``code``: ``name`` is its spec, ``kwargs`` its constructor arguments)."""

    kind: str
    name: str
    num_classes: int | None
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Geometry:
    """A binary conv's stride, padding, dilation, groups and padding mode."""

    stride: tuple[int, ...]
    padding: tuple[int, ...] | str
    dilation: tuple[int, ...]
    groups: int
    padding_mode: str

    @classmethod
    def of(cls, conv: nn.Conv2d) -> Geometry:
        padding = conv.padding if isinstance(conv.padding, str) else tuple(conv.padding)
        return cls(
            tuple(conv.stride), padding, tuple(conv.dilation), conv.groups, conv.padding_mode
        )

    def as_dict(self) -> dict[str, Any]:
        """What ``PackedConv2d`` takes."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class LayerEntry:
    """One binary layer of the file: kind, weight shape, bias, settings, conv geometry."""

    kind: str
    weight_shape: tuple[int, ...]
    has_bias: bool
    config: LayerConfig
    geometry: Geometry | None

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of ``bits`` ``(O, taps, ceil(C/64))``, ``alpha`` ``(O,)`` and ``bias``."""
        out_channels, channels = self.weight_shape[0], self.weight_shape[1]
        taps = self.weight_shape[2] * self.weight_shape[3] if self.kind == "conv2d" else 1
        shapes = {"bits": (out_channels, taps, -(-channels // 64)), "alpha": (out_channels,)}
        if self.has_bias:
            shapes["bias"] = (out_channels,)
        return shapes


@dataclass(frozen=True)
class XnorMeta:
    """The checked metadata of a ``.xnor`` file."""

    architecture: Architecture
    input_shape: tuple[int, int, int]
    class_names: list[str]
    preprocessing: Preprocessing | None
    default_data: str | None
    card: dict[str, Any]
    layers: dict[str, LayerEntry]


def _check_version(meta: dict[str, Any], path: Path) -> None:
    """One line naming the version found and what to do when it is not ``FORMAT_VERSION``."""
    version = meta.get("format_version")
    if version == FORMAT_VERSION and not isinstance(version, bool):
        return
    reads = f"this xnorlab ({__version__}) reads version {FORMAT_VERSION}"
    if isinstance(version, int) and not isinstance(version, bool) and abs(version) < 1 << 31:
        if version < FORMAT_VERSION:
            spec = meta.get("spec")
            spec = spec if isinstance(spec, str) and len(spec) <= 200 else "MODEL"
            raise XnorFileError(
                f"{path} has .xnor format version {version}; {reads}: export it again with "
                f"this xnorlab (xnorlab export {spec} --out {path.name})"
            )
        raise XnorFileError(f"{path} has .xnor format version {version}; {reads}: update xnorlab")
    raise XnorFileError(f"{path} has no valid .xnor format version ({quoted(version)}); {reads}")


def _check_architecture(value: Any) -> Architecture:
    data = schema.record(value, "architecture")
    kind, name = data.get("kind"), schema.text(data.get("name"), "architecture name", 200)
    if kind == CODE_KIND:
        kwargs = schema.plain_json(schema.record(data.get("kwargs", {}), "kwargs"), "kwargs")
        return Architecture(kind, name, schema.class_count(data.get("num_classes")), kwargs)
    if kind == ENSEMBLE_KIND:
        return _check_ensemble(data, name)
    known_by_kind = {"demo": models.ARCHITECTURES, BINARY_KIND: BINARY_ARCHITECTURES}
    if kind not in (*known_by_kind, "torchvision"):
        raise MetadataError(f"unknown architecture kind {quoted(kind)}")
    known = known_by_kind.get(kind) or torchvision_architectures()
    if name not in known:
        raise MetadataError(f"unknown {kind} architecture {quoted(name)}")
    return Architecture(kind, name, schema.class_count(data.get("num_classes")))


def _check_ensemble(data: dict[str, Any], name: str) -> Architecture:
    """An ensemble entry: a valid ``ensemble-ARCH-K`` name whose members' architecture is
    one a file may name, and ``member`` / ``members`` that say the same."""
    try:
        parsed = parse_ensemble_arch(name)
    except XnorlabError as exc:
        raise MetadataError(str(exc)) from None
    if parsed is None:
        raise MetadataError(f"ensemble architecture {quoted(name)} is not ensemble-ARCH-K")
    member, count = parsed
    if data.get("member") != member or data.get("members") != count:
        raise MetadataError(
            f"ensemble {quoted(name)} lists member {quoted(data.get('member'))} x "
            f"{quoted(data.get('members'))}, not {member} x {count}"
        )
    known = (models.ARCHITECTURES, BINARY_ARCHITECTURES)
    if not any(member in names for names in known) and member not in torchvision_architectures():
        raise MetadataError(f"unknown ensemble member architecture {quoted(member)}")
    return Architecture(ENSEMBLE_KIND, name, schema.class_count(data.get("num_classes")))


def _check_geometry(value: Any, name: str) -> Geometry:
    data = schema.record(value, f"layer {quoted(name)} geometry")
    where = f"layer {quoted(name)}"
    padding: tuple[int, ...] | str
    if isinstance(data.get("padding"), str):
        padding = data["padding"]
        if padding not in PADDING_WORDS:
            raise MetadataError(f"{where} padding must be a number pair or 'same'/'valid'")
    else:
        padding = schema.whole_list(data.get("padding"), f"{where} padding", 2, 0, MAX_GEOMETRY)
    padding_mode = data.get("padding_mode")
    if padding_mode not in PADDING_MODES:
        raise MetadataError(
            f"{where} padding_mode must be one of {', '.join(PADDING_MODES)}, "
            f"got {quoted(padding_mode)}"
        )
    return Geometry(
        stride=schema.whole_list(data.get("stride"), f"{where} stride", 2, 1, MAX_GEOMETRY),
        padding=padding,
        dilation=schema.whole_list(data.get("dilation"), f"{where} dilation", 2, 1, MAX_GEOMETRY),
        groups=schema.whole(data.get("groups"), f"{where} groups", 1, MAX_WEIGHT_DIM),
        padding_mode=padding_mode,
    )


def _check_layer(value: Any, name: str) -> LayerEntry:
    where = f"layer {quoted(name)}"
    data = schema.record(value, where)
    kind = data.get("kind")
    if kind not in LAYER_KINDS:
        raise MetadataError(f"{where} kind must be conv2d or linear, got {quoted(kind)}")
    rank = 4 if kind == "conv2d" else 2
    shape = schema.whole_list(data.get("weight_shape"), f"{where} weight_shape", rank, 1,
                              MAX_WEIGHT_DIM)  # fmt: skip
    if not isinstance(data.get("has_bias"), bool):
        raise MetadataError(f"{where} has_bias must be true or false")
    config = schema.layer_config(data.get("config"), name)
    if config.mode is Mode.FLOAT:
        raise MetadataError(f"{where} is stored packed, so its mode must be bwn or xnor")
    geometry = _check_geometry(data.get("geometry"), name) if kind == "conv2d" else None
    if geometry is not None and shape[0] % geometry.groups:
        raise MetadataError(f"{where}: {shape[0]} output channels do not split in "
                            f"{geometry.groups} groups")  # fmt: skip
    return LayerEntry(kind, shape, data["has_bias"], config, geometry)


def _check_meta(meta: dict[str, Any], path: Path) -> XnorMeta:
    """Every field of the metadata checked against its type and bounds (``schema``)."""
    if meta.get("format") != FORMAT:
        raise XnorFileError(f"{path} is not a .xnor file (format tag missing)")
    _check_version(meta, path)
    try:
        layers = schema.record(meta.get("layers"), "layers")
        if len(layers) > schema.MAX_LAYERS:
            raise MetadataError(f"layers lists {len(layers)} entries, over {schema.MAX_LAYERS}")
        entries = {
            schema.text(n, "layer name", schema.MAX_NAME_CHARS): _check_layer(e, n)
            for n, e in layers.items()
        }
        modes = schema.mode_map(meta.get("modes", {}))
        for name, entry in entries.items():
            if modes.get(name, entry.config.mode) is not entry.config.mode:
                raise MetadataError(f"modes says {quoted(name)} is {modes[name]}, "
                                    f"its config says {entry.config.mode}")  # fmt: skip
        shape = schema.input_shape(meta.get("input_shape"))
        prep = schema.preprocessing(meta.get("preprocessing"))
        if prep is not None and prep.input_shape != shape:
            raise MetadataError(
                f"input_shape {list(shape)} differs from the preprocessing's "
                f"{list(prep.input_shape)}"
            )
        card = meta.get("card", {})
        return XnorMeta(
            architecture=_check_architecture(meta.get("architecture")),
            input_shape=shape,
            class_names=schema.class_names(meta.get("class_names")),
            preprocessing=prep,
            default_data=schema.optional_text(meta.get("default_data"), "default_data"),
            card=dict(schema.record(card, "card")) if card is not None else {},
            layers=entries,
        )
    except MetadataError as exc:
        raise XnorFileError(f"{path} has bad metadata: {exc}") from None


def _read_file(path: Path) -> tuple[XnorMeta, bytes, dict[str, Any]]:
    """Checked metadata, the raw bytes and the checked safetensors header of a ``.xnor`` file;
    nothing is allocated from what the file claims."""
    try:
        raw = read_bounded(path, what=".xnor file", max_bytes=MAX_XNOR_BYTES)
    except XnorlabError as exc:
        raise XnorFileError(str(exc)) from None
    try:
        header = schema.safetensors_header(raw, len(raw))
    except XnorlabError as exc:
        raise XnorFileError(f"{path} is truncated or not a .xnor file: {exc}") from None
    meta_text = header.get("__metadata__", {}).get("xnorlab")
    if meta_text is None:
        raise XnorFileError(f"{path} is a safetensors file but not a .xnor file (no metadata)")
    try:
        meta = schema.parse_record(meta_text, what="its metadata")
    except XnorlabError as exc:
        raise XnorFileError(f"{path}: {exc}") from None
    return _check_meta(meta, path), raw, header


def _check_tensor_entries(meta: XnorMeta, header: dict[str, Any]) -> None:
    """Each binary layer's tensors in the header: int64 bits and float32 alpha and bias of
    the shapes its weight shape gives; a bias only when ``has_bias``."""
    for name, entry in meta.layers.items():
        prefix = f"{name}." if name else ""
        expected = entry.tensor_shapes()
        for key in PACKED_KEYS:
            stored = header.get(f"{prefix}{key}")
            if key not in expected:
                if stored is not None:
                    raise MetadataError(f"layer {quoted(name)} has a bias but says none")
                continue
            if stored is None:
                raise MetadataError(f"tensor {quoted(prefix + key)} is missing")
            dtype = "I64" if key == "bits" else "F32"
            if stored["dtype"] != dtype or tuple(stored["shape"]) != expected[key]:
                raise MetadataError(
                    f"tensor {quoted(prefix + key)} must be {dtype} {list(expected[key])}, "
                    f"got {stored['dtype']} {stored['shape']}"
                )


def _load_tensors(raw: bytes) -> dict[str, Tensor]:
    try:
        tensors = load(raw)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise MetadataError(f"corrupt or truncated ({schema.first_line(exc)})") from None
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:
        raise MetadataError(f"tensor {quoted(sorted(bad)[0])} holds NaN or infinity")
    return tensors


def build_architecture(arch: Architecture) -> nn.Module:
    """Build the module tree an ``architecture`` entry describes (random weights)."""
    model: nn.Module = build_arch(arch.name, arch.num_classes)
    return model


def _packed_weight(name: str, entry: LayerEntry, tensors: dict[str, Tensor]) -> PackedWeight:
    """The engine's packed weight of layer ``name``, straight from the stored words."""
    prefix = f"{name}." if name else ""
    state = {
        "bits": tensors[f"{prefix}bits"],
        "alpha": tensors[f"{prefix}alpha"],
        "shape": torch.tensor(entry.weight_shape, dtype=torch.int64),
        "layout_version": torch.tensor([WORDS_LAYOUT], dtype=torch.int64),
    }
    if entry.has_bias:
        state["bias"] = tensors[f"{prefix}bias"]
    weight_type = PackedConv2dWeight if entry.kind == "conv2d" else PackedLinearWeight
    try:
        return weight_type.from_state(state)
    except (KernelInputError, KernelTypeError) as exc:
        raise MetadataError(f"layer {quoted(name)}: {exc}") from None


def _check_target(name: str, entry: LayerEntry, target: nn.Module | None) -> None:
    """The rebuilt architecture has layer ``name`` of the entry's kind, shape and geometry."""
    kind = nn.Conv2d if entry.kind == "conv2d" else nn.Linear
    if not isinstance(target, kind):
        raise MetadataError(
            f"binary layer {quoted(name)} ({entry.kind}) is not in the architecture"
        )
    shape = tuple(target.weight.shape)
    if entry.weight_shape != shape:
        raise MetadataError(f"layer {quoted(name)}: stored shape {entry.weight_shape} != {shape}")
    if isinstance(target, nn.Conv2d) and entry.geometry is not None:
        built = dataclasses.asdict(Geometry.of(target))
        for key, value in dataclasses.asdict(entry.geometry).items():
            if value != built[key]:
                raise MetadataError(
                    f"layer {quoted(name)}: stored {key} {value} differs from the "
                    f"architecture's {built[key]}"
                )
    if entry.has_bias != (target.bias is not None):
        raise MetadataError(f"layer {quoted(name)}: has_bias does not match the architecture")


def _packed_layer(
    name: str, entry: LayerEntry, target: nn.Module | None, tensors: dict[str, Tensor]
) -> nn.Module:
    """The packed module replacing layer ``name``, checked against the rebuilt layer."""
    _check_target(name, entry, target)
    packed = _packed_weight(name, entry, tensors)
    if isinstance(packed, PackedConv2dWeight):
        assert entry.geometry is not None  # every conv2d entry has one (_check_layer)
        return PackedConv2d(packed, entry.config, entry.geometry.as_dict())
    return PackedLinear(packed, entry.config)


def _load_float_state(model: nn.Module, tensors: dict[str, Tensor], binary: set[str]) -> None:
    """Overwrite every parameter/buffer outside the binary layers; all must be in the file
    with the model's own shape and dtype."""
    prefixes = tuple(f"{name}." for name in binary)
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(prefixes)}
    packed_keys = {f"{p}{s}" for p in prefixes for s in PACKED_KEYS}
    state = {k: v for k, v in tensors.items() if k not in packed_keys}
    missing, unexpected = set(own) - set(state), set(state) - set(own)
    if missing or unexpected:
        which = f"missing {sorted(missing)[:3]}" if missing else f"unknown {sorted(unexpected)[:3]}"
        raise MetadataError(f"the file does not match its architecture ({which})")
    for key, value in own.items():
        stored = state[key]
        if stored.shape != value.shape or stored.dtype != value.dtype:
            raise MetadataError(
                f"the file does not match its architecture: {quoted(key)} is {stored.dtype} "
                f"{list(stored.shape)}, the model's is {value.dtype} {list(value.shape)}"
            )
    model.load_state_dict(state, strict=False)


def _set_child(model: nn.Module, name: str, child: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, child)


def _loaded_model(path: Path, meta: XnorMeta, model: nn.Module) -> LoadedModel:
    card = {**meta.card, "packed_modes": {n: str(e.config.mode) for n, e in meta.layers.items()}}
    return LoadedModel(
        spec=str(path),
        model=model,
        input_shape=meta.input_shape,
        class_names=meta.class_names,
        preprocessing=meta.preprocessing,
        modes=current_modes(model),  # the float layers; packed ones are frozen (card)
        default_data=meta.default_data,
        card=card,
        arch=meta.architecture.name,
    )


def _build(meta: XnorMeta, raw: bytes, header: dict[str, Any], model: nn.Module) -> nn.Module:
    """``model`` (the rebuilt architecture) checked and filled: tensors against the metadata,
    the architecture and one forward."""
    _check_tensor_entries(meta, header)
    tensors = _load_tensors(raw)
    modules = dict(model.named_modules())
    packed = {n: _packed_layer(n, e, modules.get(n), tensors) for n, e in meta.layers.items()}
    _load_float_state(model, tensors, set(meta.layers))
    for name, module in packed.items():
        _set_child(model, name, module)
    classes = schema.check_model_runs(model, meta.input_shape, meta.class_names, meta.preprocessing)
    wanted = meta.architecture.num_classes
    if wanted is not None and classes != wanted:
        raise MetadataError(f"num_classes is {wanted} but the model outputs {classes}")
    return model


def load_xnor(path: str | Path) -> LoadedModel:
    """Open a ``.xnor`` file: check it, rebuild the net, load float tensors, attach packed
    layers, run it once on plain inputs (``schema.check_model_runs``).

    The result runs in eval mode; binary layers are ``PackedConv2d`` / ``PackedLinear``
    (frozen: their mode cannot be switched, there are no float weights to go back to).
    Raises ``XnorFileError`` (one line) for a missing, corrupt, truncated, wrong-version or
    inconsistent file; the checks are listed in ``docs/xnor-format.md`` ("Validation").
    """
    file = Path(path).expanduser()
    meta, raw, header = _read_file(file)
    arch = meta.architecture
    if arch.kind == CODE_KIND:
        raise XnorFileError(
            f"{file} holds the Python class {arch.name}, which xnorlab does not import on a "
            f"file's word: open it as {arch.name} --weights {file} (your explicit choice)"
        )
    return _loaded_model(
        file, meta, _attach(file, meta, raw, header, partial(build_architecture, arch))
    )


def load_xnor_into(path: str | Path, model: nn.Module, spec: str) -> LoadedModel:
    """Open a ``.xnor`` file on ``model``, a fresh instance of the class it was exported from
    (built by the user's spec ``spec``): the checks and the result of ``load_xnor``."""
    file = Path(path).expanduser()
    meta, raw, header = _read_file(file)
    built = _attach(file, meta, raw, header, lambda: model)
    return dataclasses.replace(_loaded_model(file, meta, built), spec=spec, arch=spec)


def _attach(
    file: Path, meta: XnorMeta, raw: bytes, header: dict[str, Any], build: Callable[[], nn.Module]
) -> nn.Module:
    """``_build`` on the module tree ``build`` gives; every error names ``file``."""
    try:
        return _build(meta, raw, header, build())
    except XnorFileError:
        raise
    except XnorlabError as exc:  # MetadataError and the model builders' errors
        raise XnorFileError(f"{file}: {exc}") from None
