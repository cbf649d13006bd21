"""One model-spec string used everywhere (CLI, GUI, reports): ``load_model_spec(spec)``.

Accepted specs
--------------
``demo:lenet`` / ``demo:lenet-bwn`` / ``demo:lenet-xnor``
    The shipped LeNet checkpoints (``xnorlab/resources/checkpoints``), trained on mnist5k in
    float, BWN (``paper-bwn``) and XNOR (``paper``, kmap); the stored mode map is applied.
``demo:vgg``
    The small VGG for 32x32 colour images, *random init* (no checkpoint is shipped; the card
    says so).
``lenet`` / ``vgg``
    The bare demo architecture, random init (to train from scratch).
``xresnet18`` / ``xresnet18-small``
    The binary ResNet-18 in the XNOR-Net block order (``xnorlab.models.xresnet``; 3x224x224
    or 1x28x28 input), random init.
``resnet18`` (any torchvision classifier)
    ImageNet weights from the torch hub cache when the file is there, else random init.
``ARCH:path/to/weights`` (``resnet18:w.pth``, ``lenet:w.safetensors``)
    The architecture with a state_dict from a local file (classes inferred from its size).
``path/to/model.pt|.pth|.safetensors|.ts``
    An xnorlab checkpoint (architecture stored inside), a TorchScript file, or with
    ``trust=True`` a whole pickled model.
``path/to/model.xnor``
    The compact export, read by ``xnorlab.models.xnor_file.load_xnor``.
``path/to/file.py:ClassName`` / ``package.module:ClassName``
    The user's own code, imported and built with ``CodeOptions`` (keyword arguments, weights,
    input shape, class names): ``xnorlab.models.user_code``. Naming code is the user's choice;
    a checkpoint or ``.xnor`` file of such a class only says how to open it that way.
``live:ClassName``
    The name of a model handed to ``xnorlab.show`` from Python: shown, never reopened.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xnorlab.binary.surgery import current_modes
from xnorlab.common.errors import XnorlabError, quoted
from xnorlab.data.datasets import CIFAR10_NAMES, CIFAR10_PREPROCESSING
from xnorlab.data.images import IMAGENET_PREPROCESSING, MNIST_PREPROCESSING, Preprocessing
from xnorlab.models import schema
from xnorlab.models.checkpoint import (
    Checkpoint,
    apply_layer_settings,
    check_state_fits,
    load_state_into,
    read_checkpoint,
)
from xnorlab.models.demo import ARCHITECTURES, DEFAULT_DATA, build_demo
from xnorlab.models.ensemble import member_arch_of
from xnorlab.models.loaded import LoadedModel
from xnorlab.models.user_code import CodeOptions, CodeSpec, load_code_model, parse_code_spec
from xnorlab.models.xnor_file import SUFFIX, load_xnor
from xnorlab.models.xresnet import BINARY_ARCHITECTURES, BINARY_DEFAULT_DATA, build_binary
from xnorlab.models.zoo import (
    build_arch,
    build_torchvision,
    imagenet_weights,
    torchvision_architectures,
)

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
CHECKPOINT_DIR = RESOURCES / "checkpoints"
DEMO_CHECKPOINTS = {
    "lenet": "lenet-float.pt",
    "lenet-bwn": "lenet-bwn.pt",
    "lenet-xnor": "lenet-xnor.pt",
}
DEMO_SPECS = (*(f"demo:{name}" for name in DEMO_CHECKPOINTS), "demo:vgg")
LIVE_PREFIX = "live:"  # models handed over from Python (xnorlab.show) are named live:ClassName


def _default_preprocessing(arch: str) -> Preprocessing:
    if arch in ("lenet", "xresnet18-small"):
        return MNIST_PREPROCESSING
    if arch == "vgg":
        return CIFAR10_PREPROCESSING
    return IMAGENET_PREPROCESSING


def _classes_in_state(model: nn.Module, state: dict[str, Any]) -> int | None:
    """Rows of the last Linear's weight in ``state`` when it differs from ``model``'s."""
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        return None
    key = f"{linears[-1]}.weight"
    weight = state.get(key)
    own = model.state_dict().get(key)
    if weight is None or own is None or weight.dim() != 2 or weight.shape[0] == own.shape[0]:
        return None
    return int(weight.shape[0])


def _from_checkpoint(spec: str, ckpt: Checkpoint, arch_hint: str | None) -> LoadedModel:
    """The model of a read checkpoint (its ``meta`` already checked by ``read_checkpoint``)."""
    meta = ckpt.meta
    arch = arch_hint or str(meta.get("arch", ""))
    source = ckpt.path.name
    if ckpt.module is not None:
        return _from_module(spec, ckpt)
    if not arch:
        raise XnorlabError(
            f"{source} holds only weights and no architecture: give it as ARCH:{ckpt.path} "
            f"(e.g. resnet18:{ckpt.path} or lenet:{ckpt.path}), or your own class that builds "
            f"it as FILE.py:Class --weights {ckpt.path}"
        )
    if parse_code_spec(arch) is not None and arch not in ARCHITECTURES:
        raise XnorlabError(
            f"{source} holds weights of the Python class {arch}, which xnorlab does not import "
            f"on a file's word: open it as {arch} --weights {ckpt.path} (your explicit choice)"
        )
    num_classes = schema.class_count(meta.get("num_classes"))
    assert ckpt.state_dict is not None
    # The file's word names what to build (64 members of a large net, say): its weights must
    # fit that architecture, checked on a shell of shapes on the meta device, before anything
    # is allocated.
    with torch.device("meta"):
        shell = build_arch(arch, num_classes)
        inferred = _classes_in_state(shell, ckpt.state_dict)
        if inferred is not None and num_classes is None:
            num_classes = inferred  # bounded by the stored tensor itself
            shell = build_arch(arch, num_classes)
    check_state_fits(shell, ckpt.state_dict, source)
    model = build_arch(arch, num_classes)
    load_state_into(model, ckpt.state_dict, source)
    apply_layer_settings(model, meta.get("modes", {}), meta.get("layer_config", {}), source)
    return _assemble(spec, model, arch, meta, source)


def _assemble(
    spec: str, model: nn.Module, arch: str, meta: dict[str, Any], source: str | None = None
) -> LoadedModel:
    """The ``LoadedModel`` of ``model``; one forward on plain inputs checks that a model read
    from file ``source`` runs on the input its metadata gives and names its classes."""
    base = member_arch_of(arch)  # an ensemble's defaults are its members'
    prep = schema.preprocessing(meta.get("preprocessing")) or _default_preprocessing(base)
    names = schema.class_names(meta.get("class_names", [])) or _default_names(model, base)
    model.eval()
    if source is not None:
        try:
            schema.check_model_runs(model, prep.input_shape, names, prep)
        except XnorlabError as exc:
            raise XnorlabError(f"{source}: {exc}") from None
    return LoadedModel(
        spec=spec,
        model=model,
        input_shape=prep.input_shape,
        class_names=names,
        preprocessing=prep,
        modes=current_modes(model) if meta.get("modes") else {},
        default_data=meta.get("default_data")
        or DEFAULT_DATA.get(base)
        or BINARY_DEFAULT_DATA.get(base),
        card=dict(meta.get("card", {})),
        arch=arch,
    )


def _output_size(model: nn.Module) -> int | None:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1].out_features if linears else None


def _default_names(model: nn.Module, arch: str) -> list[str]:
    size = _output_size(model)
    if arch in ("lenet", "xresnet18-small") and size == 10:
        return [str(d) for d in range(10)]
    if arch == "vgg" and size == 10:
        return list(CIFAR10_NAMES)
    if size == 1000 and arch not in ARCHITECTURES:
        return imagenet_categories()
    return [f"class {i}" for i in range(size or 0)]


@cache
def _imagenet_categories_cached() -> tuple[str, ...]:
    from torchvision.models import ResNet18_Weights  # slow import, only for ImageNet names

    return tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def imagenet_categories() -> list[str]:
    """The 1,000 ImageNet class names shipped with torchvision (no download)."""
    return list(_imagenet_categories_cached())


def _from_module(spec: str, ckpt: Checkpoint) -> LoadedModel:
    """A TorchScript or whole pickled model: used as is (no architecture rebuilt)."""
    assert ckpt.module is not None
    meta = dict(ckpt.meta)
    arch = str(meta.get("arch", "")) or "module"
    if not meta.get("preprocessing"):
        first = next((m for m in ckpt.module.modules() if isinstance(m, nn.Conv2d)), None)
        channels = first.in_channels if first is not None else 3
        meta["preprocessing"] = (
            MNIST_PREPROCESSING.to_json() if channels == 1 else IMAGENET_PREPROCESSING.to_json()
        )
    meta.pop("modes", None)  # a traced/pickled module is used as it computes
    return _assemble(spec, ckpt.module, arch, meta, ckpt.path.name)


def _load_demo(spec: str, name: str) -> LoadedModel:
    if name == "vgg":
        card = {"trained": False, "note": "random initialisation: no trained VGG is shipped"}
        return _assemble(spec, build_demo("vgg"), "vgg", {"card": card})
    if name not in DEMO_CHECKPOINTS:
        raise XnorlabError(f"unknown demo {spec!r} (known: {', '.join(DEMO_SPECS)})")
    path = CHECKPOINT_DIR / DEMO_CHECKPOINTS[name]
    if not path.exists():
        raise XnorlabError(f"the demo checkpoint {path} is missing from this installation")
    return _from_checkpoint(spec, read_checkpoint(path), None)


def _load_torchvision(spec: str, name: str) -> LoadedModel:
    model = build_torchvision(name)
    state = imagenet_weights(name)
    card: dict[str, Any] = {"trained": state is not None}
    if state is not None:
        load_state_into(model, state, f"cached weights of {name}")
        card["weights"] = "ImageNet (torch hub cache)"
    else:
        card["note"] = "random initialisation: no cached ImageNet weights found"
    return _assemble(spec, model, name, {"card": card})


def _split_arch(text: str) -> tuple[str, str] | None:
    arch, sep, rest = text.partition(":")
    known = arch in ARCHITECTURES or arch in BINARY_ARCHITECTURES
    if sep and rest and (known or arch in torchvision_architectures()):
        return arch, rest
    return None


def code_spec_of(spec: str) -> CodeSpec | None:
    """The user's code a spec names (``FILE.py:Class``, ``package.module:Class``), else None:
    ``demo:NAME`` and ``ARCH:WEIGHTS`` keep their meaning."""
    text = spec.strip()
    code = parse_code_spec(text)
    if code is None or code.is_file:
        return code
    if code.source.lower() in ("demo", LIVE_PREFIX[:-1]) or _split_arch(text) is not None:
        return None
    return code


def load_model_spec(spec: str, trust: bool = False, code: CodeOptions | None = None) -> LoadedModel:
    """Load the model a spec string names; raises ``XnorlabError`` with a clear message.

    ``trust=True`` allows whole pickled models (which can run code when loaded). ``code``: what
    the user's own code needs (keyword arguments, weights, ...); only for a code spec.
    """
    text = spec.strip()
    if not text:
        raise XnorlabError("empty model spec")
    user_code = code_spec_of(text)
    if user_code is not None:
        return load_code_model(text, user_code, code or CodeOptions(), trust)
    if code is not None and code.given():
        raise XnorlabError(
            f"{', '.join(code.given())} apply to your own code (FILE.py:Class or "
            f"package.module:Class), not to {quoted(text)}"
        )
    if text.lower().startswith(LIVE_PREFIX):
        raise XnorlabError(
            f"{quoted(text)} names a model handed to xnorlab.show from Python; it cannot be "
            "opened by name (save its weights and open FILE.py:Class --weights FILE)"
        )
    if text.lower().startswith("demo:"):
        return _load_demo(spec, text[5:].strip().lower())
    if text.lower() in ARCHITECTURES:
        card = {"trained": False, "note": "random initialisation (architecture only)"}
        return _assemble(spec, build_demo(text.lower()), text.lower(), {"card": card})
    if text.lower() in BINARY_ARCHITECTURES:
        card = {"trained": False, "note": "random initialisation (architecture only)"}
        return _assemble(spec, build_binary(text.lower()), text.lower(), {"card": card})
    pair = _split_arch(text)
    if pair is not None:
        arch, path = pair
        return _from_checkpoint(spec, read_checkpoint(path, trust), arch)
    if text.lower().endswith(SUFFIX):
        return _load_xnor(text)
    path_exists = _exists(text)
    if Path(text).expanduser().suffix or path_exists:
        if not path_exists and text in torchvision_architectures():
            return _load_torchvision(spec, text)
        return _from_checkpoint(spec, read_checkpoint(text, trust), None)
    return _load_torchvision(spec, text)


def is_model_name(text: str) -> bool:
    """Whether ``text`` names an architecture (ours, binary or torchvision's) by itself."""
    name = text.strip()
    return (
        name.lower() in ARCHITECTURES
        or name.lower() in BINARY_ARCHITECTURES
        or name in torchvision_architectures()
    )


def _exists(text: str) -> bool:
    """Whether ``text`` names an existing path; False for a name the OS refuses (too long)."""
    try:
        return Path(text).expanduser().exists()
    except (OSError, ValueError):
        return False


def _load_xnor(path: str) -> LoadedModel:
    return load_xnor(path)
