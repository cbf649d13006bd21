"""``deploy(model)``: a binarized model prepared for inference through the native engine.

The prepared copy runs every wrapped layer natively (``Backend.NATIVE``), in eval mode, with
its 4-D input put in channels_last memory (the engine's output layout), and its binary weights
packed once, at deploy time. A torch.fx pass folds each eval-mode ``BatchNorm2d`` that directly
follows an XNOR conv into that conv's per-channel scale and shift, and a ReLU / Hardtanh after
it into an in-place clamp of the conv's output:

    (dot * alpha * S + b) * g + h  ==  dot * (alpha * g) * S + (b * g + h),
    g = gamma / sqrt(running_var + eps),  h = beta - running_mean * g

(equal up to float rounding). A model fx cannot trace is deployed unfused; the returned
``DeployReport`` says which happened.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from xnorlab.binary.layers import BinarizableLayer, BinConv2d
from xnorlab.binary.modes import Backend, Mode
from xnorlab.engine import xnor_conv2d
from xnorlab.engine.packed import PackedConv2dWeight
from xnorlab.runtime.integration import channels_last_hook, packed_weight


@dataclass
class DeployReport:
    """What :func:`deploy` did: ``fused`` names ``conv+bn[+act]`` groups, ``traced`` whether fx
    traced the model, ``reason`` why it did not (empty when it did)."""

    traced: bool = False
    reason: str = ""
    fused: list[str] = field(default_factory=list)


class FusedXnorConv(nn.Module):
    """An XNOR conv with its folded BatchNorm and optional clamp: one engine call
    ``clamp(dot * alpha' * S + b', low, high)`` (the clamp in place on the engine's output)."""

    def __init__(self, conv: BinConv2d, bn: nn.BatchNorm2d, bounds: tuple[float, float] | None):
        super().__init__()
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.pad_mode, self.scaling = conv.config.pad_mode, conv.config.scaling
        self.bounds = bounds
        packed = packed_weight(conv)
        assert isinstance(packed, PackedConv2dWeight)
        self.packed = fold_batchnorm(packed, bn)

    def forward(self, x: Tensor) -> Tensor:
        out = xnor_conv2d(
            x, self.packed, None, self.stride, self.padding, self.dilation,
            pad_mode=self.pad_mode, scaling=self.scaling,
        )  # fmt: skip
        if self.bounds is not None:
            out.clamp_(self.bounds[0], self.bounds[1])
        return out

    def extra_repr(self) -> str:
        packed = self.packed
        return (
            f"{packed.in_channels}, {packed.out_channels}, kernel_size={packed.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, clamp={self.bounds}"
        )


def fold_batchnorm(packed: PackedConv2dWeight, bn: nn.BatchNorm2d) -> PackedConv2dWeight:
    """A packed weight whose alpha and bias include the eval-mode BatchNorm ``bn`` (module doc)."""
    assert bn.running_mean is not None and bn.running_var is not None
    var = bn.running_var.detach().to(torch.float32)
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach().to(torch.float32)
    shift = -bn.running_mean.detach().to(torch.float32) * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach().to(torch.float32)
    bias = shift if packed.bias is None else packed.bias * scale + shift
    return PackedConv2dWeight(
        packed.bits, (packed.alpha * scale).contiguous(), bias.contiguous(),
        packed.out_channels, packed.in_channels, packed.taps, packed.kernel_size,
    )  # fmt: skip


class _LayerLeafTracer(fx.Tracer):
    """fx tracer that keeps the wrapped layers as single calls (their forward branches on the
    mode and would otherwise be traced into the torch simulation)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, BinarizableLayer) or super().is_leaf_module(m, module_qualified_name)


def _fusable_conv(module: Any) -> bool:
    return (
        isinstance(module, BinConv2d) and module.config.mode is Mode.XNOR and module.groups == 1
        and module.padding_mode == "zeros"
    )  # fmt: skip


def _fusable_bn(module: Any, channels: int) -> bool:
    return (
        isinstance(module, nn.BatchNorm2d) and module.track_running_stats
        and module.running_mean is not None and module.num_features == channels
    )  # fmt: skip


_RELU_FUNCTIONS: set[Callable[..., Any]] = {F.relu, torch.relu}


def _clamp_bounds(node: fx.Node, modules: dict[str, nn.Module]) -> tuple[float, float] | None:
    """The (low, high) of a ReLU / ReLU6 / Hardtanh node, or None if ``node`` is none of them."""
    if node.op == "call_module":
        module = modules[str(node.target)]
        if type(module) is nn.ReLU:
            return (0.0, float("inf"))
        if type(module) in (nn.Hardtanh, nn.ReLU6):
            assert isinstance(module, nn.Hardtanh)
            return (float(module.min_val), float(module.max_val))
    if node.op == "call_function" and node.target in _RELU_FUNCTIONS and len(node.args) == 1:
        return (0.0, float("inf"))
    return None


def _single_user(node: fx.Node) -> fx.Node | None:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


@dataclass
class _Chain:
    """One fusable ``XNOR conv -> BatchNorm2d [-> clamp]`` chain of graph nodes."""

    nodes: list[fx.Node]  # in graph order; the last one's value is the chain's output
    conv: BinConv2d
    bn: nn.BatchNorm2d
    bounds: tuple[float, float] | None

    @property
    def name(self) -> str:
        return "+".join(str(node.target) for node in self.nodes)


def _chain_at(node: fx.Node, modules: dict[str, nn.Module]) -> _Chain | None:
    """The chain that starts at ``node``, or None (its conv's output has one user, the BN)."""
    conv = modules.get(str(node.target)) if node.op == "call_module" else None
    if not isinstance(conv, BinConv2d) or not _fusable_conv(conv):
        return None
    bn_node = _single_user(node)
    if bn_node is None or bn_node.op != "call_module" or bn_node.args[:1] != (node,):
        return None
    bn = modules[str(bn_node.target)]
    if not isinstance(bn, nn.BatchNorm2d) or not _fusable_bn(bn, conv.out_channels):
        return None
    act_node = _single_user(bn_node)
    bounds = None if act_node is None else _clamp_bounds(act_node, modules)
    if act_node is None or bounds is None:
        return _Chain([node, bn_node], conv, bn, None)
    return _Chain([node, bn_node, act_node], conv, bn, bounds)


def _fuse_graph(gm: fx.GraphModule) -> list[str]:
    """Replace each chain of ``gm`` by one :class:`FusedXnorConv`; returns the chains' names."""
    modules = dict(gm.named_modules())
    fused: list[str] = []
    for node in list(gm.graph.nodes):
        chain = _chain_at(node, modules)
        if chain is None:
            continue
        target = chain.name.replace(".", "_").replace("+", "__")
        gm.add_submodule(target, FusedXnorConv(chain.conv, chain.bn, chain.bounds))
        with gm.graph.inserting_after(chain.nodes[-1]):
            new = gm.graph.call_module(target, (node.args[0],))
        chain.nodes[-1].replace_all_uses_with(new)
        for dead in reversed(chain.nodes):
            gm.graph.erase_node(dead)
        fused.append(chain.name)
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return fused


def _shared_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` that shares its parameters and buffers (no tensor is copied)."""
    memo: dict[int, Any] = {id(t): t for t in model.parameters()}
    memo.update({id(t): t for t in model.buffers()})
    return copy.deepcopy(model, memo)


def _packs(layer: BinarizableLayer) -> bool:
    """Whether the engine runs ``layer`` from a packed weight (XNOR layers, BWN Linear)."""
    mode = layer.config.mode
    return mode is Mode.XNOR or (mode is Mode.BWN and not isinstance(layer, BinConv2d))


def _prepare_layers(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, BinarizableLayer):
            module.native_cache = None
            module.configure(backend=Backend.NATIVE)
            if _packs(module):
                packed_weight(module)


def _has_xnor_conv(model: nn.Module) -> bool:
    return any(isinstance(m, BinConv2d) and m.config.mode is Mode.XNOR for m in model.modules())


def deploy(model: nn.Module, fuse: bool = True) -> nn.Module:
    """``model`` (binarized with ``binarize_model``, its modes as set) prepared for inference.

    Returns a copy in eval mode whose wrapped layers run
    in the native engine with their weights packed now, whose 4-D input is put in channels_last
    memory when it has XNOR convs, and (``fuse``) whose ``XNOR conv -> BatchNorm2d [-> ReLU /
    Hardtanh]`` chains are single fused engine calls (module doc; a model fx cannot trace stays
    unfused; its ``deploy_report``, a :class:`DeployReport`, says which happened). ``model`` itself is not modified. The copy shares
    ``model``'s parameters and buffers, but the packed and fused weights are a snapshot: deploy
    again after changing weights or modes. Run it under ``torch.no_grad()`` (or inference mode):
    with autograd on, the wrapped layers use the torch simulation.
    """
    prepared = _shared_copy(model).eval()
    _prepare_layers(prepared)
    report = DeployReport()
    if fuse and _has_xnor_conv(prepared):
        try:
            graph = _LayerLeafTracer().trace(prepared)
        except Exception as exc:  # fx refuses dynamic control flow in many ways
            report.reason = f"torch.fx could not trace the model ({type(exc).__name__}: {exc})"
        else:
            report.traced = True
            gm = fx.GraphModule(prepared, graph, type(prepared).__name__)
            report.fused = _fuse_graph(gm)
            prepared = gm
    if _has_xnor_conv(model):
        prepared.register_forward_pre_hook(channels_last_hook)
    vars(prepared)["deploy_report"] = report  # a plain attribute (not a module or tensor)
    return prepared


__all__ = ["DeployReport", "FusedXnorConv", "deploy", "fold_batchnorm"]
