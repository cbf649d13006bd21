"""torchvision architectures by name (random init unless weights are given elsewhere)."""

from __future__ import annotations

import difflib
from functools import cache
from pathlib import Path

import torch
from torch import nn

from xnorlab.common.errors import XnorlabError, quoted
from xnorlab.models.demo import ARCHITECTURES, build_demo
from xnorlab.models.ensemble import BinaryEnsemble, parse_ensemble_arch
from xnorlab.models.xresnet import BINARY_ARCHITECTURES, build_binary

# torchvision is imported inside the functions that name a torchvision model: it is slow to
# import and sessions with the demo nets never need it.
DEFAULT_IMAGE_SHAPE = (3, 224, 224)
_SPECIAL_SHAPES = {"inception_v3": (3, 299, 299)}


@cache
def torchvision_architectures() -> tuple[str, ...]:
    """Names of torchvision's image-classification architectures."""
    import torchvision.models as tvm

    return tuple(sorted(tvm.list_models(module=tvm)))


def torchvision_input_shape(name: str) -> tuple[int, int, int]:
    """The (C, H, W) input an architecture is usually run at."""
    return _SPECIAL_SHAPES.get(name, DEFAULT_IMAGE_SHAPE)


def build_torchvision(name: str, num_classes: int | None = None) -> nn.Module:
    """Build torchvision architecture ``name`` with random weights (nothing is downloaded)."""
    import torchvision.models as tvm

    names = torchvision_architectures()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3) if len(name) <= 200 else []
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise XnorlabError(f"unknown model {quoted(name)}{hint}")
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    if name == "inception_v3":
        kwargs["init_weights"] = False
        kwargs["aux_logits"] = False
    model: nn.Module = tvm.get_model(name, weights=None, **kwargs)
    return model


def cached_weights_path(name: str) -> Path | None:
    """Where torch hub caches ``name``'s default ImageNet weights, if that file exists."""
    import torch.hub
    import torchvision.models as tvm

    try:
        weights = tvm.get_model_weights(name).DEFAULT
    except (ValueError, KeyError, AttributeError):
        return None
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(str(weights.url)).name
    return path if path.is_file() else None


def imagenet_weights(name: str) -> dict[str, torch.Tensor] | None:
    """The cached ImageNet state_dict of ``name`` (``weights_only`` load), or None if absent."""
    path = cached_weights_path(name)
    if path is None:
        return None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged cache file: say which
        raise XnorlabError(f"cached weights {path} cannot be read ({type(exc).__name__})") from None
    if not isinstance(state, dict):
        raise XnorlabError(f"cached weights {path} hold no state_dict")
    return state


def build_arch(arch: str, num_classes: int | None = None) -> nn.Module:
    """A demo architecture (``lenet``, ``vgg``), a binary one in the XNOR-Net block order
    (``xresnet18``, ``xresnet18-small``), a torchvision one or an ensemble of one of them (``ensemble-ARCH-K``,
    ``models.ensemble``), random init."""
    members = parse_ensemble_arch(arch)
    if members is not None:
        member_arch, count = members
        return BinaryEnsemble([build_arch(member_arch, num_classes) for _ in range(count)])
    if arch in ARCHITECTURES:
        return build_demo(arch, 10 if num_classes is None else num_classes)
    if arch in BINARY_ARCHITECTURES:
        return build_binary(arch, num_classes)
    return build_torchvision(arch, num_classes)
