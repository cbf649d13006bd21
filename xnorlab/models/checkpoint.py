"""Save and read model files safely.

Formats (chosen by suffix when saving):

* ``.pt`` / ``.pth``: ``{"xnorlab": META, "state_dict": {name: tensor}}`` where ``META`` is a
  plain JSON-able dict (architecture, classes, preprocessing, mode map, layer settings, card).
  Everything in it loads with ``torch.load(weights_only=True)``.
* ``.safetensors``: the tensors, with ``META`` as JSON in the header metadata (key ``xnorlab``).
* ``.ts``: TorchScript (``torch.jit.save``), ``META`` as the extra file ``xnorlab.json``.

Reading never unpickles arbitrary objects unless ``trust=True``: a pickle that would run code
is refused by ``weights_only=True`` and reported as one ``XnorlabError``.
"""

from __future__ import annotations

import json
import pickle
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from xnorlab.binary.layers import BinarizableLayer, LayerConfig
from xnorlab.binary.surgery import binarize_model, current_modes, float_mode, iter_binarizable
from xnorlab.common.errors import XnorlabError
from xnorlab.models.xnor_file import SUFFIX as XNOR_SUFFIX

FORMAT_VERSION = 1
META_KEY = "xnorlab"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".safetensors", ".ts")  # what save_checkpoint writes
_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")


@dataclass
class Checkpoint:
    """What a file held: metadata (or {}), a state_dict, or a whole module (TorchScript/pickle)."""

    path: Path
    meta: dict[str, Any] = field(default_factory=dict)
    state_dict: dict[str, Tensor] | None = None
    module: nn.Module | None = None


def _read_bytes_check(path: Path) -> None:
    if not path.exists():
        raise XnorlabError(f"model file {path} does not exist")
    if path.is_dir():
        raise XnorlabError(f"{path} is a folder, not a model file")
    if path.stat().st_size == 0:
        raise XnorlabError(f"model file {path} is empty (0 bytes)")


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict[str, Any]) -> Path:
    """Write ``model`` with ``meta`` (JSON-able) to ``path`` in the format of its suffix.

    The file is written to a temporary name first and renamed, so an interrupted save never
    leaves a half-written checkpoint at ``path``.
    """
    target = Path(path)
    try:  # a JSON round trip leaves only plain types, all allowed by weights_only=True
        record = json.loads(json.dumps({**meta, "format": FORMAT_VERSION}))
    except (TypeError, ValueError) as exc:
        raise XnorlabError(f"checkpoint metadata is not JSON-able ({exc})") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".partial")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    suffix = target.suffix.lower()
    if suffix in (".pt", ".pth"):
        torch.save({META_KEY: record, "state_dict": state}, tmp)
    elif suffix == ".safetensors":
        save_file(state, str(tmp), metadata={META_KEY: json.dumps(record)})
    elif suffix == ".ts":
        _save_torchscript(model, record, tmp)
    else:
        raise XnorlabError(f"cannot save {target.name}: use {', '.join(CHECKPOINT_SUFFIXES)}")
    tmp.replace(target)
    return target


def _save_torchscript(model: nn.Module, record: dict[str, Any], tmp: Path) -> None:
    was_training = model.training
    model.eval()
    try:
        shape = record.get("preprocessing", {})
        example = torch.zeros(
            1, shape.get("channels", 3), shape.get("height", 32), shape.get("width", 32)
        )
        with torch.no_grad(), float_mode(model):
            if any(mode != "float" for mode in record.get("modes", {}).values()):
                raise XnorlabError(
                    "TorchScript export is for float models; use .pt or .safetensors"
                )
            with _torchscript_deprecation_silenced():
                traced = torch.jit.trace(model, example)  # type: ignore[no-untyped-call]
                torch.jit.save(traced, str(tmp), _extra_files={"xnorlab.json": json.dumps(record)})
    finally:
        model.train(was_training)


@contextmanager
def _torchscript_deprecation_silenced() -> Iterator[None]:
    """Silence torch's "`torch.jit.*` is deprecated" FutureWarning (only that one).

    TorchScript files are still what many users have; the format is supported on purpose.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r".*torch\.jit\.\w+` is deprecated", category=FutureWarning
        )
        yield


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def read_checkpoint(path: str | Path, trust: bool = False) -> Checkpoint:
    """Read any supported model file; every failure is one ``XnorlabError``."""
    source = Path(path).expanduser()
    _read_bytes_check(source)
    suffix = source.suffix.lower()
    if suffix == ".safetensors":
        return _read_safetensors(source)
    if suffix == ".ts" or _is_torchscript(source):
        return _read_torchscript(source)
    if suffix in (".pt", ".pth", ".bin", ".ckpt", ".tar"):
        return _read_pickle(source, trust)
    raise XnorlabError(
        f"{source.name}: unknown model file type "
        f"(expected {', '.join((*CHECKPOINT_SUFFIXES, XNOR_SUFFIX))})"
    )


def _read_safetensors(path: Path) -> Checkpoint:
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own error types
        raise XnorlabError(f"{path.name} is not a valid safetensors file ({exc})") from None
    return Checkpoint(path=path, meta=_parse_meta(header.get(META_KEY), path), state_dict=state)


def _parse_meta(text: str | None, path: Path) -> dict[str, Any]:
    if not text:
        return {}
    try:
        meta = json.loads(text)
    except json.JSONDecodeError:
        raise XnorlabError(f"{path.name}: its xnorlab metadata is not valid JSON") from None
    if not isinstance(meta, dict):
        raise XnorlabError(f"{path.name}: its xnorlab metadata is not a JSON object")
    return meta


def _read_torchscript(path: Path) -> Checkpoint:
    extra = {"xnorlab.json": ""}
    try:
        with _torchscript_deprecation_silenced():
            module = torch.jit.load(  # type: ignore[no-untyped-call]
                str(path), map_location="cpu", _extra_files=extra
            )
    except Exception as exc:  # TorchScript raises RuntimeError and its own types
        raise XnorlabError(
            f"{path.name} is not a loadable TorchScript file ({_first_line(exc)})"
        ) from None
    meta = _parse_meta(extra["xnorlab.json"] or None, path)
    return Checkpoint(path=path, meta=meta, module=module)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:160] if lines else type(exc).__name__


def _read_pickle(path: Path, trust: bool) -> Checkpoint:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as exc:
        if trust:
            raise XnorlabError(f"{path.name} is corrupt ({_first_line(exc)})") from None
        raise XnorlabError(
            f"{path.name} holds Python objects, not only weights; loading it could run code. "
            f"Use --trust only if you trust where the file comes from"
        ) from None
    except Exception as exc:  # corrupt zip, truncated stream, bad pickle opcode, ...
        raise XnorlabError(f"{path.name} is corrupt or truncated ({_first_line(exc)})") from None
    return _interpret(obj, path)


def _interpret(obj: Any, path: Path) -> Checkpoint:
    if isinstance(obj, nn.Module):
        return Checkpoint(path=path, module=obj)
    if not isinstance(obj, dict):
        raise XnorlabError(f"{path.name} holds a {type(obj).__name__}, not a model or state_dict")
    meta = obj.get(META_KEY, {})
    if not isinstance(meta, dict):
        raise XnorlabError(f"{path.name}: its xnorlab metadata is not a dict")
    for key in _NESTED_KEYS:
        inner = obj.get(key)
        if isinstance(inner, nn.Module):
            return Checkpoint(path=path, meta=meta, module=inner)
        if isinstance(inner, dict) and inner and _all_tensors(inner):
            return Checkpoint(path=path, meta=meta, state_dict=_strip_prefix(inner))
    tensors = {k: v for k, v in obj.items() if k != META_KEY}
    if tensors and _all_tensors(tensors):
        return Checkpoint(path=path, meta=meta, state_dict=_strip_prefix(tensors))
    raise XnorlabError(f"{path.name} holds no state_dict (a dict of tensors) and no model")


def _all_tensors(mapping: dict[Any, Any]) -> bool:
    return all(isinstance(k, str) and isinstance(v, Tensor) for k, v in mapping.items())


def _strip_prefix(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop the ``module.`` prefix that ``nn.DataParallel`` adds to every key."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_state_into(model: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """``model.load_state_dict(state)`` (strict) with one clear error on any mismatch."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} (e.g. {', '.join(unexpected[:3])})")
    if wrong:
        problems.append(f"wrong shape {len(wrong)} (e.g. {'; '.join(wrong[:2])})")
    if problems:
        raise XnorlabError(f"{source} does not fit the architecture: {'; '.join(problems)}")
    bad = [
        k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]
    if bad:
        raise XnorlabError(f"{source} has NaN/inf values in {', '.join(bad[:3])}")
    model.load_state_dict(state, strict=True)


def layer_settings(model: nn.Module) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """The mode map and each wrapped layer's settings, as JSON-able dicts (backend left out)."""
    modes = {name: str(mode) for name, mode in current_modes(model).items()}
    configs: dict[str, dict[str, Any]] = {}
    for name, module in iter_binarizable(model):
        if isinstance(module, BinarizableLayer):
            config = module.config.to_json()
            config.pop("backend", None)
            configs[name] = config
    return modes, configs


def apply_layer_settings(
    model: nn.Module, modes: dict[str, Any], configs: dict[str, Any], source: str
) -> None:
    """Wrap ``model`` and restore a stored mode map and per-layer settings."""
    if not modes and not configs:
        return
    if not isinstance(modes, dict) or not isinstance(configs, dict):
        raise XnorlabError(f"{source}: stored modes/layer settings are not JSON objects")
    try:
        binarize_model(model, modes, warn_first_last=False)
        for name, module in iter_binarizable(model):
            stored = configs.get(name)
            if isinstance(module, BinarizableLayer) and isinstance(stored, dict):
                fields = {k: v for k, v in stored.items() if k not in ("backend", "mode")}
                module.config = LayerConfig.create(**fields).updated(mode=module.mode)
    except (ValueError, TypeError) as exc:
        raise XnorlabError(f"{source}: bad stored layer settings ({exc})") from None
