"""Model surgery: find binarizable layers, apply a mode map, undo to the float model.

``binarize_model`` replaces every ``nn.Conv2d`` / ``nn.Linear`` of a model by a wrapper
(``BinConv2d`` / ``BinLinear``) that shares its Parameters, then sets each wrapper's mode from a
mode map or a preset. ``restore_float`` puts the original modules back. Layer names are the
dotted names of ``model.named_modules()``.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import json
import warnings
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xnorlab.binary.layers import BinarizableLayer, BinConv2d, BinLinear, LayerConfig
from xnorlab.binary.modes import Mode
from xnorlab.common.errors import XnorlabError, quoted
from xnorlab.common.files import existing
from xnorlab.common.jsonio import load_json_file

PRESETS = ("paper", "paper-bwn", "xnor", "bwn", "float")
MAX_MODE_FILE_BYTES = 4 << 20  # a mode map of a million layers fits
_ORIGINAL_ATTR = "_xnorlab_original"


class FirstLastBinarizedWarning(UserWarning):
    """The first or last layer was binarized, against the paper's default."""


class ModeMapError(XnorlabError, ValueError):
    """A mode map names unknown layers, unknown modes, or cannot be read."""


@dataclass(frozen=True)
class LayerInfo:
    """One binarizable layer as listed to the user."""

    name: str
    kind: str  # "conv2d" or "linear"
    weight_shape: tuple[int, ...]
    params: int  # weight + bias elements
    groups: int
    mode: Mode
    position: str  # "first", "last", "first+last" or "" (paper default keeps first/last float)


def _unbinarizable_reason(module: nn.Module, parent: nn.Module | None) -> str | None:
    """Why a Conv2d/Linear cannot switch mode, or None when it can."""
    if isinstance(module, BinarizableLayer):
        return None
    if isinstance(parent, nn.MultiheadAttention):
        return "nn.MultiheadAttention uses this projection's weight directly, not its forward"
    if type(module) not in (nn.Conv2d, nn.Linear):
        base = "Conv2d" if isinstance(module, nn.Conv2d) else "Linear"
        return f"{type(module).__name__} is a subclass of {base} with a forward of its own"
    return None


def _conv_linear_with_reason(model: nn.Module) -> Iterator[tuple[str, nn.Module, str | None]]:
    modules = dict(model.named_modules())
    for name, module in modules.items():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            parent = modules.get(name.rpartition(".")[0]) if name else None
            yield name, module, _unbinarizable_reason(module, parent)


def iter_binarizable(model: nn.Module) -> Iterator[tuple[str, nn.Conv2d | nn.Linear]]:
    """Yield ``(name, module)`` for every Conv2d/Linear that can switch mode (wrapped or not),
    in registration order; see ``unbinarizable_layers`` for the others."""
    for name, module, reason in _conv_linear_with_reason(model):
        if reason is None:
            assert isinstance(module, (nn.Conv2d, nn.Linear))
            yield name, module


def unbinarizable_layers(model: nn.Module) -> dict[str, str]:
    """Conv2d/Linear layers that stay float whatever the mode map says -> the reason."""
    return {name: reason for name, _, reason in _conv_linear_with_reason(model) if reason}


def binarizable_names(model: nn.Module) -> list[str]:
    """Names of the binarizable layers, first to last."""
    return [name for name, _ in iter_binarizable(model)]


def _position(index: int, count: int) -> str:
    tags = [tag for tag, hit in (("first", index == 0), ("last", index == count - 1)) if hit]
    return "+".join(tags)


def layer_groups(model: nn.Module) -> list[list[str]]:
    """The binarizable layers grouped by network: one group, or one per member of a model made
    of independent networks (``independent_members`` true and a ``members`` ModuleList, as an
    ensemble), since each member has its own first and last layer that presets keep float."""
    names = binarizable_names(model)
    members = getattr(model, "members", None)
    if not getattr(model, "independent_members", False) or not isinstance(members, nn.ModuleList):
        return [names] if names else []
    groups = [[n for n in names if n.startswith(f"members.{i}.")] for i in range(len(members))]
    return [group for group in groups if group]


def _end_layers(model: nn.Module) -> set[str]:
    """The first and last binarizable layer of each group (``layer_groups``)."""
    return {name for group in layer_groups(model) for name in (group[0], group[-1])}


def _group_positions(model: nn.Module) -> dict[str, str]:
    return {
        name: _position(index, len(group))
        for group in layer_groups(model)
        for index, name in enumerate(group)
    }


def list_layers(model: nn.Module) -> list[LayerInfo]:
    """Describe every binarizable layer with its current mode (float if not wrapped)."""
    layers = list(iter_binarizable(model))
    positions = _group_positions(model)
    infos = []
    for name, module in layers:
        params = module.weight.numel() + (module.bias.numel() if module.bias is not None else 0)
        mode = module.mode if isinstance(module, BinarizableLayer) else Mode.FLOAT
        infos.append(
            LayerInfo(
                name=name,
                kind="conv2d" if isinstance(module, nn.Conv2d) else "linear",
                weight_shape=tuple(module.weight.shape),
                params=params,
                groups=int(getattr(module, "groups", 1)),
                mode=mode,
                position=positions.get(name, ""),
            )
        )
    return infos


def preset_modes(model: nn.Module, preset: str) -> dict[str, Mode]:
    """The mode map of a preset.

    ``paper``: first and last layer float, every other layer XNOR (the paper's default);
    ``paper-bwn``: the same with BWN; ``xnor`` / ``bwn`` / ``float``: every layer.
    """
    names = binarizable_names(model)
    key = preset.strip().lower()
    if key not in PRESETS:
        raise ModeMapError(
            f"unknown preset {quoted(preset)} (expected one of: {', '.join(PRESETS)})"
        )
    if key in ("xnor", "bwn", "float"):
        return dict.fromkeys(names, Mode.parse(key))
    inner = Mode.XNOR if key == "paper" else Mode.BWN
    ends = _end_layers(model)
    return {name: (Mode.FLOAT if name in ends else inner) for name in names}


def _closest(name: str, names: list[str]) -> str:
    if len(name) > 200:  # difflib is quadratic; no layer name is this long
        return ""
    close = difflib.get_close_matches(name, names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def validate_mode_map(model: nn.Module, modes: Mapping[str, Mode | str]) -> dict[str, Mode]:
    """Check every name and mode of ``modes``; return it with modes parsed.

    Raises ``ModeMapError`` naming the first unknown layer or mode.
    """
    names = binarizable_names(model)
    known = set(names)
    fixed = unbinarizable_layers(model)
    clean: dict[str, Mode] = {}
    for name, mode in modes.items():
        if not isinstance(name, str) or (name not in known and name not in fixed):
            hint = _closest(name, names) if isinstance(name, str) else ""
            raise ModeMapError(f"unknown layer {quoted(name)} in mode map{hint}")
        try:
            parsed = Mode.parse(mode)
        except ValueError as exc:
            raise ModeMapError(f"layer {quoted(name)}: {exc}") from None
        if name in fixed:
            if parsed is not Mode.FLOAT:
                raise ModeMapError(f"layer {quoted(name)} cannot be {parsed}: {fixed[name]}")
            continue
        clean[name] = parsed
    return clean


def load_mode_map(path: str | Path, model: nn.Module) -> dict[str, Mode]:
    """Read a JSON mode map: ``{"layer": "xnor", ...}`` or
    ``{"preset": "paper", "layers": {"layer": "bwn"}}`` (layers override the preset).
    """
    try:
        data = load_json_file(path, what="mode file", max_bytes=MAX_MODE_FILE_BYTES)
    except XnorlabError as exc:
        raise ModeMapError(str(exc)) from None
    if not isinstance(data, dict):
        raise ModeMapError(f"mode file {path} must hold a JSON object")
    if "preset" in data or "layers" in data:
        extra = sorted(set(data) - {"preset", "layers"}, key=str)
        if extra:
            raise ModeMapError(
                f"mode file {path}: unknown key {quoted(extra[0])} beside 'preset' "
                "(per-layer modes go under 'layers')"
            )
        preset = data.get("preset", "float")
        if not isinstance(preset, str):
            raise ModeMapError(f"mode file {path}: 'preset' must be a string")
        base = preset_modes(model, preset)
        layers = data.get("layers", {})
        if not isinstance(layers, dict):
            raise ModeMapError(f"mode file {path}: 'layers' must be an object")
        base.update(validate_mode_map(model, layers))
        return base
    return validate_mode_map(model, data)


def mode_map_text(modes: Mapping[str, Mode]) -> str:
    """A mode map as the JSON mode file ``load_mode_map`` reads: ``{"layer": "xnor", ...}``."""
    return (
        json.dumps({name: str(Mode.parse(mode)) for name, mode in modes.items()}, indent=2) + "\n"
    )


def resolve_modes(model: nn.Module, spec: str | Mapping[str, Mode | str]) -> dict[str, Mode]:
    """Turn a preset name, a JSON file path or a mapping into a validated mode map."""
    if isinstance(spec, Mapping):
        return validate_mode_map(model, spec)
    if spec.strip().lower() in PRESETS:
        return preset_modes(model, spec)
    if spec.endswith(".json") or existing(spec) is not None:
        return load_mode_map(spec, model)
    raise ModeMapError(
        f"--modes {quoted(spec)} is neither a preset ({', '.join(PRESETS)}) nor a JSON file"
    )


def _set_child(model: nn.Module, name: str, child: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, child)


def wrap_layers(model: nn.Module, config: LayerConfig | None = None) -> nn.Module:
    """Replace every plain Conv2d/Linear by its wrapper (float mode). Idempotent, in place."""
    base = config or LayerConfig()
    for name, module in list(iter_binarizable(model)):
        if isinstance(module, BinarizableLayer):
            continue
        if type(module) not in (nn.Conv2d, nn.Linear):
            continue  # user subclasses have their own forward: leave them alone
        wrapper: BinarizableLayer = (
            BinConv2d(module, base) if isinstance(module, nn.Conv2d) else BinLinear(module, base)
        )
        wrapper.train(module.training)
        object.__setattr__(wrapper, _ORIGINAL_ATTR, module)
        if name == "":
            raise ValueError("the model itself is a single layer; wrap it in nn.Sequential")
        _set_child(model, name, wrapper)
    return model


def _warn_first_last(model: nn.Module, modes: Mapping[str, Mode]) -> None:
    for name in sorted(_end_layers(model)):
        if modes.get(name, Mode.FLOAT) is not Mode.FLOAT:
            warnings.warn(
                f"layer {name!r} is the model's first or last layer; the paper keeps it float "
                f"(binarizing it usually costs much accuracy)",
                FirstLastBinarizedWarning,
                stacklevel=3,
            )


def binarize_model(
    model: nn.Module,
    modes: str | Mapping[str, Mode | str] = "paper",
    *,
    warn_first_last: bool = True,
    **settings: Any,
) -> dict[str, Mode]:
    """Wrap ``model``'s layers in place and apply a mode map; return the applied map.

    ``modes`` is a preset, a JSON file path or a mapping (layers not named keep their mode).
    ``settings`` (``scaling``, ``pad_mode``, ``weight_grad``, ``clip``, ``backend``) apply to
    every layer. Everything is validated before the model is touched.
    """
    mode_map = resolve_modes(model, modes)
    config = LayerConfig().updated(**settings)
    wrap_layers(model)
    for name, module in iter_binarizable(model):
        if isinstance(module, BinarizableLayer):
            new_mode = mode_map.get(name, module.mode)
            module.config = (config if settings else module.config).updated(mode=new_mode)
    if warn_first_last:
        _warn_first_last(model, mode_map)
    return current_modes(model)


def current_modes(model: nn.Module) -> dict[str, Mode]:
    """Mode of every binarizable layer (float for unwrapped ones)."""
    return {info.name: info.mode for info in list_layers(model)}


def restore_float(model: nn.Module) -> nn.Module:
    """Undo ``binarize_model``: put every original float module back, in place."""
    for name, module in list(iter_binarizable(model)):
        original = getattr(module, _ORIGINAL_ATTR, None)
        if original is not None:
            original.train(module.training)
            _set_child(model, name, original)
    return model


def layer_macs(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """Multiply-accumulates of each binarizable layer for one input of ``input_shape``.

    Conv: ``H_out * W_out * C_out * (C_in / groups) * kh * kw`` per sample; Linear:
    ``out_features * in_features`` per row. Measured with forward hooks on a zero input
    (batch 1), in float mode, without changing the model's state.
    """
    macs: dict[str, int] = {}
    handles = []
    for name, module in iter_binarizable(model):

        def hook(mod: nn.Module, inputs: Any, output: torch.Tensor, name: str = name) -> None:
            weight: torch.Tensor = mod.weight  # type: ignore[assignment]
            if isinstance(mod, nn.Conv2d):
                per_output = int(weight[0].numel())
            else:
                per_output = int(weight.shape[1])
            macs[name] = macs.get(name, 0) + output.numel() * per_output

        handles.append(module.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), float_mode(model):
            model(torch.zeros((1, *input_shape)))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return macs


def wrapped_layers(model: nn.Module) -> dict[str, BinarizableLayer]:
    """Name -> wrapper of every wrapped binarizable layer, in registration order."""
    return {n: m for n, m in iter_binarizable(model) if isinstance(m, BinarizableLayer)}


@contextmanager
def layer_configs(model: nn.Module, configs: Mapping[str, LayerConfig]) -> Iterator[nn.Module]:
    """The one way to change layer configs for a while: the named wrappers get ``configs``
    inside the block, and every wrapper's config is restored in ``finally``."""
    layers = wrapped_layers(model)
    saved = {name: layer.config for name, layer in layers.items()}
    try:
        for name, config in configs.items():
            layers[name].config = config
        yield model
    finally:
        for name, config in saved.items():
            layers[name].config = config


def float_mode(model: nn.Module) -> AbstractContextManager[nn.Module]:
    """Context manager: run every wrapped layer in float mode, restoring configs on exit."""
    floats = {n: m.config.updated(mode=Mode.FLOAT) for n, m in wrapped_layers(model).items()}
    return layer_configs(model, floats)


def copy_model(model: nn.Module, *, share_tensors: bool = True) -> nn.Module:
    """Copy ``model``'s module tree, leaving out native-engine caches.

    ``share_tensors=True``: the copy shares every Parameter and buffer with ``model`` (cheap;
    a worker may switch the copy's modes and add hooks without touching the live model).
    ``share_tensors=False``: a full deep copy (for training a private copy).
    """
    memo: dict[int, Any] = {}
    if share_tensors:
        for tensor in itertools.chain(model.parameters(), model.buffers()):
            memo[id(tensor)] = tensor
    for module in model.modules():
        cache = getattr(module, "native_cache", None)
        if cache is not None:
            memo[id(cache)] = None
    return copy.deepcopy(model, memo)
