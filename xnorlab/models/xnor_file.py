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
from), ``architecture`` (``{"kind": "demo"|"torchvision", "name", "num_classes"}``: enough to
rebuild the module tree without any weight file), ``input_shape``, ``class_names``,
``preprocessing``, ``modes`` and ``layers`` (per binary layer: kind, weight_shape, config,
conv geometry).

``load_xnor`` rebuilds the architecture with random init, overwrites every float tensor, and
replaces the binary layers by ``PackedConv2d`` / ``PackedLinear`` built from the stored words
(``from_state``: no unpacking to floats and packing again).
"""

from __future__ import annotations

import dataclasses
import json
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
from xnorlab.common.errors import XnorlabError
from xnorlab.data.images import Preprocessing
from xnorlab.engine import KernelInputError, KernelTypeError, PackedConv2dWeight, PackedLinearWeight
from xnorlab.models import demo as models
from xnorlab.models.loaded import LoadedModel
from xnorlab.models.packed_layers import PackedConv2d, PackedLinear, PackedWeight, has_packed_layers
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

    Uses ``loaded.arch`` (a demo or torchvision name); without it, demo nets are recognised by
    class and torchvision nets by their module and the spec's name.
    """
    model = loaded.model
    classes = _num_classes(model)
    name = getattr(loaded, "arch", "") or ""
    if not name:
        by_class = [n for n, cls in models.ARCHITECTURES.items() if type(model) is cls]
        from_spec = loaded.spec.strip().split(":", 1)[0]
        if by_class:
            name = by_class[0]
        elif type(model).__module__.startswith("torchvision.models"):
            name = from_spec
    if name in models.ARCHITECTURES:
        return {"kind": "demo", "name": name, "num_classes": classes}
    if name in torchvision_architectures():
        return {"kind": "torchvision", "name": name, "num_classes": classes}
    return None


def build_architecture(arch: Any) -> nn.Module:
    """Build the module tree an ``architecture`` entry describes (random weights)."""
    if not isinstance(arch, dict) or not isinstance(arch.get("name"), str):
        raise XnorFileError("the file's architecture entry is missing or malformed")
    classes = arch.get("num_classes")
    if classes is not None and (not isinstance(classes, int) or classes < 1):
        raise XnorFileError("the file's architecture entry has a bad num_classes")
    if arch.get("kind") not in ("demo", "torchvision"):
        raise XnorFileError(f"unknown architecture kind {arch.get('kind')!r} in the file")
    model: nn.Module = build_arch(arch["name"], classes)
    return model


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


def _read_file(path: Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Metadata and tensors of a ``.xnor`` file; one clear error for anything broken."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise XnorFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) < 8:
        raise XnorFileError(f"{path} is not a .xnor file (only {len(raw)} bytes)")
    header_len = int.from_bytes(raw[:8], "little")
    if header_len <= 0 or 8 + header_len > len(raw):
        raise XnorFileError(f"{path} is truncated or not a .xnor file (bad header length)")
    try:
        header = json.loads(raw[8 : 8 + header_len])
        tensors = load(raw)
    except (SafetensorError, ValueError, UnicodeDecodeError, RuntimeError) as exc:
        raise XnorFileError(f"{path} is corrupt or truncated ({exc})") from None
    meta_text = header.get("__metadata__", {}).get("xnorlab") if isinstance(header, dict) else None
    if not isinstance(meta_text, str):
        raise XnorFileError(f"{path} is a safetensors file but not a .xnor file (no metadata)")
    try:
        meta = json.loads(meta_text)
    except json.JSONDecodeError as exc:
        raise XnorFileError(f"{path} has corrupt metadata ({exc})") from None
    return _check_meta(meta, path), tensors


def _check_version(meta: dict[str, Any], path: Path) -> None:
    """One line naming the version found and what to do when it is not ``FORMAT_VERSION``."""
    version = meta.get("format_version")
    if version == FORMAT_VERSION:
        return
    reads = f"this xnorlab ({__version__}) reads version {FORMAT_VERSION}"
    if isinstance(version, int) and version < FORMAT_VERSION:
        spec = meta.get("spec") if isinstance(meta.get("spec"), str) else "MODEL"
        raise XnorFileError(
            f"{path} has .xnor format version {version}; {reads}: export it again with this "
            f"xnorlab (xnorlab export {spec} --out {path.name})"
        )
    if isinstance(version, int):
        raise XnorFileError(f"{path} has .xnor format version {version}; {reads}: update xnorlab")
    raise XnorFileError(f"{path} has no valid .xnor format version ({version!r}); {reads}")


def _check_meta(meta: Any, path: Path) -> dict[str, Any]:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise XnorFileError(f"{path} is not a .xnor file (format tag missing)")
    _check_version(meta, path)
    for key, kind in (("layers", dict), ("input_shape", list), ("class_names", list)):
        if not isinstance(meta.get(key), kind):
            raise XnorFileError(f"{path} has malformed metadata ({key!r})")
    return meta


def _tensor(tensors: dict[str, Tensor], key: str) -> Tensor:
    value = tensors.get(key)
    if value is None:
        raise XnorFileError(f"tensor {key!r} is missing from the file")
    return value


def _packed_weight(
    name: str, entry: dict[str, Any], shape: tuple[int, ...], tensors: dict[str, Tensor]
) -> PackedWeight:
    """The engine's packed weight of layer ``name``, straight from the stored words."""
    prefix = f"{name}." if name else ""
    state = {
        "bits": _tensor(tensors, f"{prefix}bits"),
        "alpha": _tensor(tensors, f"{prefix}alpha"),
        "shape": torch.tensor(shape, dtype=torch.int64),
        "layout_version": torch.tensor([WORDS_LAYOUT], dtype=torch.int64),
    }
    if entry.get("has_bias"):
        state["bias"] = _tensor(tensors, f"{prefix}bias")
    weight_type = PackedConv2dWeight if len(shape) == 4 else PackedLinearWeight
    try:
        return weight_type.from_state(state)
    except (KernelInputError, KernelTypeError) as exc:
        raise XnorFileError(f"layer {name!r}: {exc}") from None


def _packed_layer(
    name: str, entry: Any, target: nn.Module | None, tensors: dict[str, Tensor]
) -> nn.Module:
    """The packed module replacing layer ``name``, checked against the rebuilt layer."""
    if not isinstance(entry, dict) or not isinstance(target, (nn.Conv2d, nn.Linear)):
        raise XnorFileError(f"binary layer {name!r} does not exist in the architecture")
    shape = tuple(int(d) for d in entry.get("weight_shape", ()))
    if shape != tuple(target.weight.shape):
        raise XnorFileError(f"layer {name!r}: stored shape {shape} != {tuple(target.weight.shape)}")
    try:
        config = LayerConfig.create(**entry["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise XnorFileError(f"layer {name!r}: bad config in the file ({exc})") from None
    packed = _packed_weight(name, entry, shape, tensors)
    try:
        if isinstance(packed, PackedConv2dWeight):
            return PackedConv2d(packed, config, entry["geometry"])
        return PackedLinear(packed, config)
    except (KeyError, TypeError, ValueError) as exc:
        raise XnorFileError(f"layer {name!r}: bad layer entry in the file ({exc})") from None


def _load_float_state(model: nn.Module, tensors: dict[str, Tensor], binary: set[str]) -> None:
    """Overwrite every parameter/buffer outside the binary layers; all must be in the file."""
    prefixes = tuple(f"{name}." for name in binary)
    expected = {k for k in model.state_dict() if not k.startswith(prefixes)}
    packed_keys = {f"{p}{s}" for p in prefixes for s in PACKED_KEYS}
    state = {k: v for k, v in tensors.items() if k not in packed_keys}
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        which = f"missing {sorted(missing)[:3]}" if missing else f"unknown {sorted(unexpected)[:3]}"
        raise XnorFileError(f"the file does not match its architecture ({which})")
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise XnorFileError(f"the file does not match its architecture: {first}") from None


def _set_child(model: nn.Module, name: str, child: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, child)


def _loaded_model(path: Path, meta: dict[str, Any], model: nn.Module) -> LoadedModel:
    """A ``LoadedModel`` with every field the current ``LoadedModel`` class knows."""
    shape = meta["input_shape"]
    if len(shape) != 3 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise XnorFileError(f"{path} has a malformed input_shape {shape!r}")
    prep = meta.get("preprocessing")
    arch = meta.get("architecture") or {}
    card = dict(meta["card"]) if isinstance(meta.get("card"), dict) else {}
    card["packed_modes"] = {
        n: str(e.get("config", {}).get("mode")) for n, e in meta["layers"].items()
    }
    return LoadedModel(
        spec=str(path),
        model=model,
        input_shape=(shape[0], shape[1], shape[2]),
        class_names=[str(c) for c in meta["class_names"]],
        preprocessing=Preprocessing.from_json(prep) if prep is not None else None,
        modes=current_modes(model),  # the float layers; packed ones are frozen (card)
        default_data=meta.get("default_data")
        if isinstance(meta.get("default_data"), str)
        else None,
        card=card,
        arch=str(arch.get("name", "")),
    )


def load_xnor(path: str | Path) -> LoadedModel:
    """Open a ``.xnor`` file: rebuild the net, load float tensors, attach packed layers.

    The result runs in eval mode; binary layers are ``PackedConv2d`` / ``PackedLinear``
    (frozen: their mode cannot be switched, there are no float weights to go back to).
    Raises ``XnorFileError`` for a missing, corrupt, truncated or wrong-version file.
    """
    file = Path(path)
    meta, tensors = _read_file(file)
    model = build_architecture(meta.get("architecture"))
    modules = dict(model.named_modules())
    binary = dict(meta["layers"])
    packed = {n: _packed_layer(n, e, modules.get(n), tensors) for n, e in binary.items()}
    _load_float_state(model, tensors, set(binary))
    for name, module in packed.items():
        _set_child(model, name, module)
    model.eval()
    return _loaded_model(file, meta, model)
