"""Save and read model files safely.

Formats (chosen by suffix when saving):

* ``.pt`` / ``.pth``: ``{"xnorlab": META, "state_dict": {name: tensor}}`` where ``META`` is a
  plain JSON-able dict (architecture, classes, preprocessing, mode map, layer settings, card).
  Everything in it loads with ``torch.load(weights_only=True)``.
* ``.safetensors``: the tensors, with ``META`` as JSON in the header metadata (key ``xnorlab``).
* ``.ts``: TorchScript (``torch.jit.save``), ``META`` as the extra file ``xnorlab.json``.

Reading first tells what a file is (``classify_model_file``) without running any of it: a
damaged or foreign file is ``CORRUPT`` whatever its name, and only a structurally sound pickle
that ``weights_only=True`` refuses for the Python objects it names is ``FULL_PICKLE``, the one
kind that needs ``trust=True`` (unpickling it can run code). ``META`` is checked against
``xnorlab.models.schema`` before anything is built from it. Every failure is one
``XnorlabError`` line.
"""

from __future__ import annotations

import io
import json
import mmap
import pickle
import pickletools
import stat
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import IO, Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from xnorlab.binary.layers import BinarizableLayer, LayerConfig
from xnorlab.binary.surgery import binarize_model, current_modes, float_mode, iter_binarizable
from xnorlab.common.atomic import atomic_write
from xnorlab.common.errors import XnorlabError, quoted
from xnorlab.common.files import check_input_file
from xnorlab.models import schema
from xnorlab.models.schema import MetadataError
from xnorlab.models.xnor_file import FORMAT as XNOR_FORMAT
from xnorlab.models.xnor_file import SUFFIX as XNOR_SUFFIX

FORMAT_VERSION = 1
META_KEY = "xnorlab"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".safetensors", ".ts")  # what save_checkpoint writes
READ_SUFFIXES = (*CHECKPOINT_SUFFIXES, ".bin", ".ckpt", ".tar")  # what read_checkpoint opens
MAX_CHECKPOINT_BYTES = 16 << 30  # a bound on what is opened at all (a device never ends)
_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")
# torch.save's first pickle in its pre-zip format (torch.serialization.MAGIC_NUMBER)
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PICKLES = 4  # magic number, protocol version, system info, the object
_ZIP_MAGIC = b"PK\x03\x04"
# torch.save stores members uncompressed and TorchScript deflates only its code, so members
# that unpack to many times the file's size are a zip bomb, not a model.
_ZIP_EXPANSION = 16
# Opcodes that name or call a Python object: a pickle without them cannot need code to load.
_CODE_OPCODES = frozenset(
    ("GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2",
     "EXT4")
)  # fmt: skip
_FRAMING_OPCODES = frozenset(("PROTO", "FRAME", "STOP", "MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"))
_SCAN_ERRORS = (ValueError, EOFError, IndexError, KeyError, OverflowError, MemoryError)


class ModelFileKind(Enum):
    """What a model file is, told from its bytes without running any of it."""

    CHECKPOINT = "checkpoint"  # torch.save file, weights only, with xnorlab metadata
    STATE_DICT = "state_dict"  # torch.save file, weights only, tensors without metadata
    FULL_PICKLE = "full pickle"  # names Python objects: loading it can run code (trust only)
    TORCHSCRIPT = "torchscript"
    SAFETENSORS = "safetensors"
    XNOR = "xnor"  # the packed format, read by xnorlab.models.xnor_file
    CORRUPT = "corrupt"  # damaged, truncated, empty or not a model file at all

    @property
    def needs_trust(self) -> bool:
        """Whether loading needs ``trust=True`` (a full pickle can run code)."""
        return self is ModelFileKind.FULL_PICKLE


@dataclass
class Checkpoint:
    """What a file held: metadata (or {}), a state_dict, or a whole module (TorchScript/pickle)."""

    path: Path
    meta: dict[str, Any] = field(default_factory=dict)
    state_dict: dict[str, Tensor] | None = None
    module: nn.Module | None = None


@dataclass
class _Probe:
    """A classified file: its kind, why (for ``CORRUPT``), the weights-only object if loaded."""

    kind: ModelFileKind
    reason: str = ""
    obj: Any = None


# ------------------------------------------------------------------------------ writing


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict[str, Any]) -> Path:
    """Write ``model`` with ``meta`` (JSON-able) to ``path`` in the format of its suffix.

    Written through ``common.atomic.atomic_write``: an interrupted save never leaves a
    half-written checkpoint at ``path``, and the next save removes a killed run's temp.
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in CHECKPOINT_SUFFIXES:
        raise XnorlabError(f"cannot save {target.name}: use {', '.join(CHECKPOINT_SUFFIXES)}")
    try:  # a JSON round trip leaves only plain types, all allowed by weights_only=True
        record = json.loads(json.dumps({**meta, "format": FORMAT_VERSION}, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise XnorlabError(f"checkpoint metadata is not JSON-able ({exc})") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}

    def write(tmp: Path) -> None:
        if suffix in (".pt", ".pth"):
            torch.save({META_KEY: record, "state_dict": state}, tmp)
        elif suffix == ".safetensors":
            save_file(state, str(tmp), metadata={META_KEY: json.dumps(record)})
        else:
            _save_torchscript(model, record, tmp)

    atomic_write(target, write)
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


# ------------------------------------------------------------------------ classifying


def _scan_pickle(stream: IO[bytes], file_bytes: int) -> tuple[bool, list[Any]]:
    """Walk one pickle to its STOP without running it (``pickletools.genops``): whether it
    names or calls Python objects, and the arguments of its first data opcodes. Raises
    ``MetadataError`` for a damaged pickle or a storage declared larger than the file."""
    names_code, last_int = False, 0
    values: list[Any] = []
    try:
        for opcode, arg, _ in pickletools.genops(stream):
            names_code = names_code or opcode.name in _CODE_OPCODES
            if isinstance(arg, int):
                last_int = arg
            if opcode.name in ("BINPERSID", "PERSID") and last_int > file_bytes:
                raise MetadataError(f"a storage of {last_int} elements in a {file_bytes}-byte file")
            if len(values) < 4 and opcode.name not in _FRAMING_OPCODES:
                values.append(arg)
    except MetadataError:
        raise
    except _SCAN_ERRORS as exc:
        raise MetadataError(f"damaged serialized data ({schema.first_line(exc)})") from None
    return names_code, values


def _weights_only_load(path: Path, names_code: bool) -> _Probe:
    """``torch.load(weights_only=True)`` of a structurally sound torch file, classified."""
    try:
        with warnings.catch_warnings():  # e.g. "pickle protocol 4": the outcome says enough
            warnings.simplefilter("ignore")
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if names_code:
            return _Probe(ModelFileKind.FULL_PICKLE, schema.first_line(exc))
        return _Probe(ModelFileKind.CORRUPT, "unreadable serialized data")
    except Exception as exc:  # torch raises RuntimeError and others for damaged archives
        return _Probe(ModelFileKind.CORRUPT, schema.first_line(exc))
    try:
        checkpoint = _interpret(obj, path)
    except XnorlabError as exc:
        return _Probe(ModelFileKind.CORRUPT, str(exc).removeprefix(f"{path.name} "))
    kind = ModelFileKind.CHECKPOINT if checkpoint.meta else ModelFileKind.STATE_DICT
    return _Probe(kind, obj=checkpoint)


def _probe_zip(path: Path, file_bytes: int) -> _Probe:
    """A torch.save zip archive or TorchScript: members that unpack to a bounded size and
    pass their checksums, then for torch.save (members stored uncompressed, as torch writes
    them) one ``data.pkl`` that walks to its end."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if sum(m.file_size for m in members) > _ZIP_EXPANSION * file_bytes:
                return _Probe(ModelFileKind.CORRUPT, "a zip archive that unpacks far larger")
            damaged = archive.testzip()
            if damaged is not None:
                return _Probe(ModelFileKind.CORRUPT, f"member {quoted(damaged)} is damaged")
            names = [m.filename for m in members]
            if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
                return _Probe(ModelFileKind.TORCHSCRIPT)
            if any(m.compress_type != zipfile.ZIP_STORED for m in members):
                return _Probe(ModelFileKind.CORRUPT, "a compressed zip archive, not torch's")
            pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(pickles) != 1:
                return _Probe(ModelFileKind.CORRUPT, "a zip archive without one torch data.pkl")
            names_code, _ = _scan_pickle(io.BytesIO(archive.read(pickles[0])), file_bytes)
    except MetadataError as exc:
        return _Probe(ModelFileKind.CORRUPT, str(exc))
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        return _Probe(ModelFileKind.CORRUPT, f"damaged zip archive: {schema.first_line(exc)}")
    return _weights_only_load(path, names_code)


def _probe_legacy(path: Path, file_bytes: int) -> _Probe:
    """torch.save's pre-zip format: the magic number, then three more pickles that walk to
    their ends. Any other pickle is not a checkpoint (torch.load cannot read it either)."""
    try:
        with (
            open(path, "rb") as handle,
            mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view,
        ):
            _, magic = _scan_pickle(view, file_bytes)  # type: ignore[arg-type]
            if magic != [_LEGACY_MAGIC]:
                return _Probe(
                    ModelFileKind.CORRUPT, "serialized Python data, not a torch.save file"
                )
            names_code = False
            for _ in range(_LEGACY_PICKLES - 1):
                names_code = _scan_pickle(view, file_bytes)[0] or names_code  # type: ignore[arg-type]
    except MetadataError as exc:
        return _Probe(ModelFileKind.CORRUPT, str(exc))
    except (OSError, ValueError) as exc:
        return _Probe(ModelFileKind.CORRUPT, schema.first_line(exc))
    return _weights_only_load(path, names_code)


def _probe_safetensors(path: Path, file_bytes: int) -> _Probe:
    try:
        header = schema.read_safetensors_header(path, file_bytes)
        meta_text = header.get("__metadata__", {}).get(META_KEY)
        meta = schema.parse_record(meta_text, "its metadata") if meta_text is not None else {}
    except XnorlabError as exc:
        return _Probe(ModelFileKind.CORRUPT, str(exc))
    if meta.get("format") == XNOR_FORMAT:
        return _Probe(ModelFileKind.XNOR)
    return _Probe(ModelFileKind.SAFETENSORS)


def _looks_like_safetensors(head: bytes, file_bytes: int) -> bool:
    size = int.from_bytes(head[:8], "little") if len(head) >= 9 else 0
    return 2 <= size <= file_bytes - 8 and head[8:9] == b"{"


def _check_model_path(path: Path) -> Path:
    """``path`` if it is a regular file of at most ``MAX_CHECKPOINT_BYTES``."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise XnorlabError(f"model file {path} does not exist") from None
    except OSError as exc:  # a name too long, a loop of links, no permission, ...
        raise XnorlabError(f"cannot read model file {quoted(str(path))}: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise XnorlabError(f"{path} is a folder, not a model file")
    return check_input_file(path, what="model file", max_bytes=MAX_CHECKPOINT_BYTES)


def _probe(path: Path) -> _Probe:
    source = _check_model_path(path)
    file_bytes = source.stat().st_size
    if file_bytes == 0:
        return _Probe(ModelFileKind.CORRUPT, "the file is empty (0 bytes)")
    try:
        with open(source, "rb") as handle:
            head = handle.read(16)
    except OSError as exc:
        raise XnorlabError(f"cannot read model file {source}: {exc.strerror or exc}") from None
    if head.startswith(_ZIP_MAGIC):
        return _probe_zip(source, file_bytes)
    if _looks_like_safetensors(head, file_bytes):
        return _probe_safetensors(source, file_bytes)
    if head[:1] == b"\x80":  # pickle's PROTO opcode
        return _probe_legacy(source, file_bytes)
    return _Probe(ModelFileKind.CORRUPT, "not a torch, TorchScript or safetensors file")


def classify_model_file(path: str | Path) -> ModelFileKind:
    """What the model file at ``path`` is, without running any of it (see the module
    docstring); ask the user about trust only for ``FULL_PICKLE``. Raises ``XnorlabError``
    when the path is missing, a folder, a device or a pipe."""
    return _probe(Path(path).expanduser()).kind


# ------------------------------------------------------------------------------ reading


def read_checkpoint(path: str | Path, trust: bool = False) -> Checkpoint:
    """Read any supported model file; every failure is one ``XnorlabError``."""
    source = Path(path).expanduser()
    if source.suffix.lower() not in READ_SUFFIXES:
        _check_model_path(source)
        raise XnorlabError(
            f"{source.name}: unknown model file type "
            f"(expected {', '.join((*CHECKPOINT_SUFFIXES, XNOR_SUFFIX))})"
        )
    probe = _probe(source)
    kind = probe.kind
    if kind is ModelFileKind.CORRUPT:
        raise XnorlabError(f"{source.name} is corrupt or not a checkpoint: {probe.reason}")
    if kind is ModelFileKind.XNOR:
        raise XnorlabError(f"{source.name} is a packed model: open it under a {XNOR_SUFFIX} name")
    if kind is ModelFileKind.SAFETENSORS:
        checkpoint = _read_safetensors(source)
    elif kind is ModelFileKind.TORCHSCRIPT:
        checkpoint = _read_torchscript(source)
    elif kind is ModelFileKind.FULL_PICKLE:
        checkpoint = _read_full_pickle(source, trust)
    else:
        checkpoint = probe.obj
    checkpoint.meta = check_meta(checkpoint.meta, source.name)
    return checkpoint


def check_meta(meta: Any, source: str) -> dict[str, Any]:
    """``meta`` if every field xnorlab reads from it is of its type and within its bounds
    (``xnorlab.models.schema``); else one ``XnorlabError`` naming the field."""
    try:
        data = schema.record(meta, "metadata")
        schema.plain_json(data, "metadata")
        version = schema.whole(data.get("format", FORMAT_VERSION), "format", 1, 2**31)
        if "arch" in data:
            schema.text(data["arch"], "arch", schema.MAX_NAME_CHARS)
        schema.class_count(data.get("num_classes"))
        schema.class_names(data.get("class_names", []))
        schema.preprocessing(data.get("preprocessing"))
        schema.optional_text(data.get("default_data"), "default_data")
        schema.mode_map(data.get("modes", {}))
        schema.layer_configs(data.get("layer_config", {}))
        schema.record(data.get("card", {}), "card")
    except MetadataError as exc:
        raise XnorlabError(f"{source} has bad xnorlab metadata: {exc}") from None
    # A newer format may mean other things by the same keys: read it as this one's, never.
    if version > FORMAT_VERSION:
        raise XnorlabError(
            f"{source} was written by a newer xnorlab (checkpoint format {version}; this one "
            f"reads format {FORMAT_VERSION}): open it with that version"
        )
    return data


def _read_safetensors(path: Path) -> Checkpoint:
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own error types
        raise XnorlabError(
            f"{path.name} is not a valid safetensors file ({schema.first_line(exc)})"
        ) from None
    return Checkpoint(path=path, meta=_parse_meta(header.get(META_KEY), path), state_dict=state)


def _parse_meta(text: str | None, path: Path) -> dict[str, Any]:
    if not text:
        return {}
    try:
        return schema.parse_record(text, f"{path.name}: its xnorlab metadata")
    except XnorlabError as exc:
        raise XnorlabError(str(exc)) from None


def _read_torchscript(path: Path) -> Checkpoint:
    extra = {"xnorlab.json": ""}
    try:
        with _torchscript_deprecation_silenced():
            module = torch.jit.load(  # type: ignore[no-untyped-call]
                str(path), map_location="cpu", _extra_files=extra
            )
    except Exception as exc:  # TorchScript raises RuntimeError and its own types
        raise XnorlabError(
            f"{path.name} is not a loadable TorchScript file ({schema.first_line(exc)})"
        ) from None
    meta = _parse_meta(extra["xnorlab.json"] or None, path)
    return Checkpoint(path=path, meta=meta, module=module)


def _read_full_pickle(path: Path, trust: bool) -> Checkpoint:
    """A pickle naming Python objects: refused unless ``trust`` (loading it can run code)."""
    if not trust:
        raise XnorlabError(
            f"{path.name} holds Python objects, not only weights; loading it could run code: "
            "allow it only if you trust where the file comes from (command line: --trust)"
        )
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:  # whatever the pickled code raises, the file did not load
        raise XnorlabError(f"{path.name} is corrupt ({schema.first_line(exc)})") from None
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
    check_state_fits(model, state, source)
    bad = [
        k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]
    if bad:
        raise XnorlabError(f"{source} has NaN/inf values in {', '.join(bad[:3])}")
    model.load_state_dict(state, strict=True)


def check_state_fits(model: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """One clear error unless ``state`` has exactly ``model``'s keys and shapes; ``model`` may
    live on the meta device (shapes only, nothing allocated)."""
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
