"""Per-layer plumbing: the detached working copy, layer hooks and the shapes of one forward."""

from __future__ import annotations

import torch
from measure_support import binarized, small_net

from xnorlab.binary.modes import Backend, Mode
from xnorlab.measure.layers import detached_copy, layer_hooks, layer_mode, shapes_per_layer


def test_detached_copy_shares_weights_not_configs() -> None:
    model = binarized("paper")
    model[3].native_cache = object()
    copy = detached_copy(model)
    assert copy[3].weight is model[3].weight
    assert copy[3].native_cache is None and model[3].native_cache is not None
    copy[3].configure(mode="float", backend="native")
    assert model[3].mode is Mode.XNOR and model[3].config.backend is Backend.TORCH


def test_layer_mode_of_wrapped_and_plain_layers() -> None:
    assert [layer_mode(binarized("paper")[i]) for i in (0, 3, 5)] == [
        Mode.FLOAT, Mode.XNOR, Mode.FLOAT
    ]  # fmt: skip
    assert layer_mode(small_net()[3]) is Mode.FLOAT


def test_hooks_see_every_binarizable_forward_in_order_and_are_removed() -> None:
    model = binarized("paper")
    events: list[str] = []
    with layer_hooks(model, lambda name, _a, _o: events.append(f"post {name}"),
                     lambda name: events.append(f"pre {name}")):  # fmt: skip
        model(torch.randn(2, 1, 8, 8))
    assert events == ["pre 0", "post 0", "pre 3", "post 3", "pre 5", "post 5"]
    model(torch.randn(2, 1, 8, 8))
    assert len(events) == 6
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_shapes_per_layer_are_of_one_sample() -> None:
    shapes = shapes_per_layer(binarized("paper"), torch.randn(5, 1, 8, 8))
    assert shapes == {
        "0": ((1, 8, 8), (8, 6, 6)),
        "3": ((8, 6, 6), (16, 4, 4)),
        "5": ((256,), (10,)),
    }
