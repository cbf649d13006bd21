"""Per-layer plumbing of the measurements: a private working copy of a model, the mode of a
layer, forward hooks on the binarizable layers, and the layer shapes of one forward."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from xnorlab.binary.layers import BinarizableLayer
from xnorlab.binary.modes import Mode
from xnorlab.binary.surgery import copy_model, iter_binarizable

PreHook = Callable[[str], None]
PostHook = Callable[[str, tuple[Any, ...], Any], None]


def detached_copy(model: nn.Module) -> nn.Module:
    """Copy of ``model``'s module tree sharing its Parameters and buffers, without native caches.

    Layer configs are copied, so a worker may switch the copy's modes and backends (and add
    hooks) while the GUI thread changes the original's. Nothing here writes to weights.
    """
    return copy_model(model, share_tensors=True)


def layer_mode(module: nn.Module) -> Mode:
    """Mode of a binarizable module (float when unwrapped)."""
    return module.mode if isinstance(module, BinarizableLayer) else Mode.FLOAT


@contextmanager
def layer_hooks(model: nn.Module, post: PostHook, pre: PreHook | None = None) -> Iterator[None]:
    """Inside the block, every forward of a binarizable layer ``name`` calls ``pre(name)``
    before and ``post(name, args, output)`` after it; the hooks are removed on exit."""
    handles: list[RemovableHandle] = []
    for name, module in iter_binarizable(model):
        if pre is not None:
            handles.append(module.register_forward_pre_hook(_pre_hook(pre, name)))
        handles.append(module.register_forward_hook(_post_hook(post, name)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _pre_hook(pre: PreHook, name: str) -> Callable[[nn.Module, Any], None]:
    def hook(_module: nn.Module, _args: Any) -> None:
        pre(name)

    return hook


def _post_hook(post: PostHook, name: str) -> Callable[[nn.Module, Any, Any], None]:
    def hook(_module: nn.Module, args: Any, output: Any) -> None:
        post(name, args, output)

    return hook


def shapes_per_layer(model: nn.Module, x: Tensor) -> dict[str, tuple[tuple[int, ...], ...]]:
    """Name -> (input shape, output shape) of one sample, from a no-grad forward of ``x[:1]``."""
    shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

    def record(name: str, args: tuple[Any, ...], output: Any) -> None:
        shapes[name] = (tuple(args[0].shape[1:]), tuple(output.shape[1:]))

    with layer_hooks(model, record), torch.no_grad():
        model(x[:1])
    return shapes
