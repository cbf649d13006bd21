"""``deploy(model)``: a binarized model prepared for inference through the native engine.

The prepared copy runs every wrapped layer natively (``Backend.NATIVE``), in eval mode, with
its 4-D input put in channels_last memory (the engine's output layout), and its binary weights
packed once, at deploy time. torch.fx passes over its graph (modules in
``xnorlab.runtime.fused``, the folding formula there):

1. each chain ``XNOR conv [-> BatchNorm2d] [-> + shortcut] [-> ReLU / ReLU6 / Hardtanh]`` (at
   least one link) becomes one engine call (:class:`FusedXnorConv`), and an eval BatchNorm2d
   after a float conv is folded into that conv's weight and bias;
2. every other eval BatchNorm2d and the clamp after it (in the XNOR-Net order, the one before
   a binary conv) becomes the prologue of the XNOR conv it feeds when that conv is its only
   reader (applied while the engine packs the input, so the normalized tensor is never
   written), else one multiply-add (:class:`AffineClamp`);
3. max pools the engine computes run there (:class:`EngineMaxPool2d`), with the clamp before
   one (a ResNet stem's ReLU) applied to its output when the pool alone reads it;
4. (``bit_outputs``, off by default) a fused conv whose output only another fused conv
   reads, as its input, hands it its packed input (sign bits and sums of ``|x|``) instead of
   a float tensor;
5. (``chain``, on unless ``bit_outputs``) each run of consecutive fused convs that read only
   the run's input and each other's outputs, and whose outputs only the run reads (the last
   one's aside), becomes one engine call (:class:`EngineChain`): a ResNet's residual blocks
   run without returning to Python between convs (its ``nn.Identity`` shortcuts are dropped
   from the graph first).

A model fx cannot trace is deployed unfused; the returned model's ``deploy_report`` (a
:class:`DeployReport`) says which happened.
"""

from __future__ import annotations

import copy
import operator
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from xnorlab.binary.layers import BinarizableLayer, BinConv2d
from xnorlab.binary.modes import Backend, Mode
from xnorlab.engine import Prologue
from xnorlab.runtime.fused import (
    AffineClamp,
    EngineChain,
    EngineMaxPool2d,
    FusedXnorConv,
    batchnorm_affine,
)
from xnorlab.runtime.integration import ChannelsLastInput, channels_last_hook, packed_weight


@dataclass
class DeployReport:
    """What :func:`deploy` did: ``fused`` names the fused chains (``conv+bn[+add][+act]``, by
    graph node), ``prologues`` the BatchNorms (``bn[+act]>conv``) run inside the XNOR conv
    they feed, ``affine`` the other BatchNorms (``bn[+act]``) run as :class:`AffineClamp`,
    ``pools`` the max pools run in the engine, ``bit_outputs`` the fused convs
    (``conv>reader``) that hand the XNOR conv alone reading their output its packed input,
    ``chains`` the runs of fused convs run as one engine call (``first..last (n convs)``) and
    ``chained_convs`` how many convs they hold,
    ``traced`` whether fx traced the model, ``reason`` why not (empty if it did)."""

    traced: bool = False
    reason: str = ""
    fused: list[str] = field(default_factory=list)
    affine: list[str] = field(default_factory=list)
    prologues: list[str] = field(default_factory=list)
    pools: list[str] = field(default_factory=list)
    bit_outputs: list[str] = field(default_factory=list)
    chains: list[str] = field(default_factory=list)
    chained_convs: int = 0

    def text(self) -> str:
        """One line for the app and the reports."""
        if not self.traced:
            return f"deploy: not fused, {self.reason}" if self.reason else "deploy: not fused"
        pools = f", max pools in the engine {len(self.pools)}" if self.pools else ""
        bits = f", outputs passed packed {len(self.bit_outputs)}" if self.bit_outputs else ""
        runs = ""
        if self.chains:
            runs = f", {self.chained_convs} convs in {len(self.chains)} engine chain(s)"
        return (
            f"deploy: fused chains {len(self.fused)}, BatchNorms in the next conv's packing "
            f"{len(self.prologues)}, as multiply-add {len(self.affine)}{pools}{bits}{runs} "
            "(torch.fx traced the model)"
        )


def _bits_graph(gm: fx.GraphModule) -> list[str]:
    """Link each fused conv whose only reader is a fused conv without a prologue, reading it
    as its input only, to write that reader's packed input (``FusedXnorConv.write_bits_for``);
    returns the links' names."""
    modules = dict(gm.named_modules())
    done: list[str] = []
    for node in gm.graph.nodes:
        writer = modules.get(str(node.target)) if node.op == "call_module" else None
        user = _single_user(node) if isinstance(writer, FusedXnorConv) else None
        if writer is None or user is None or user.op != "call_module" or user.kwargs:
            continue
        reader = modules.get(str(user.target))
        if not isinstance(reader, FusedXnorConv) or reader.prologue is not None:
            continue
        if user.args[:1] != (node,) or node in user.args[1:]:
            continue
        assert isinstance(writer, FusedXnorConv)
        writer.write_bits_for(reader)
        done.append(f"{node.target}>{user.target}")
    return done


def _closed_prefix(run: list[fx.Node]) -> int:
    """The length of the longest prefix of ``run`` (at least 2) whose values, the last one's
    aside, only that prefix reads; 0 if there is none."""
    for size in range(len(run), 1, -1):
        inside = set(run[:size])
        if all(set(node.users) <= inside for node in run[: size - 1]):
            return size
    return 0


def _fused_runs(gm: fx.GraphModule) -> list[tuple[fx.Node, list[fx.Node]]]:
    """(input, nodes) of each run of consecutive fused-conv nodes that read only the run's
    input and earlier nodes of the run, and whose values only the run reads (but the last)."""
    modules = dict(gm.named_modules())

    def fused(node: fx.Node) -> bool:
        module = modules.get(str(node.target)) if node.op == "call_module" else None
        return isinstance(module, FusedXnorConv) and not node.kwargs and bool(node.args)

    nodes = list(gm.graph.nodes)
    runs: list[tuple[fx.Node, list[fx.Node]]] = []
    i = 0
    while i < len(nodes):
        source = nodes[i].args[0] if fused(nodes[i]) else None
        if not isinstance(source, fx.Node):
            i += 1
            continue
        members: set[fx.Node] = {source}
        run: list[fx.Node] = []
        for node in nodes[i:]:
            if not fused(node) or not all(a in members for a in node.args):
                break
            run.append(node)
            members.add(node)
        size = _closed_prefix(run)
        if size:
            runs.append((source, run[:size]))
        i += max(size, 1)
    return runs


def _drop_identities(gm: fx.GraphModule) -> None:
    """Read each ``nn.Identity``'s input where its output was read (a ResNet's plain shortcut
    is one, and would end a run of fused convs)."""
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        module = modules.get(str(node.target)) if node.op == "call_module" else None
        if type(module) is nn.Identity and len(node.args) == 1 and not node.kwargs:
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)


def _chain_graph(gm: fx.GraphModule) -> tuple[list[str], int]:
    """Replace each run of :func:`_fused_runs` by one :class:`EngineChain` (identities
    dropped first); their names and the number of convs they hold."""
    _drop_identities(gm)
    modules = dict(gm.named_modules())
    done: list[str] = []
    convs_chained = 0
    for index, (source, run) in enumerate(_fused_runs(gm)):
        slots: dict[Any, int] = {source: 0, **{node: k + 1 for k, node in enumerate(run)}}
        wiring = [
            (slots[node.args[0]], slots[node.args[1]] if len(node.args) > 1 else None)
            for node in run
        ]  # fmt: skip
        convs = [modules[str(node.target)] for node in run]
        assert all(isinstance(conv, FusedXnorConv) for conv in convs)
        target = f"engine_chain_{index}"
        gm.add_submodule(target, EngineChain(convs, wiring))
        with gm.graph.inserting_after(run[-1]):
            new = gm.graph.call_module(target, (source,))
        run[-1].replace_all_uses_with(new)
        for dead in reversed(run):
            gm.graph.erase_node(dead)
        done.append(f"{run[0].target}..{run[-1].target} ({len(run)} convs)")
        convs_chained += len(run)
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return done, convs_chained


def _engine_pool(module: Any) -> bool:
    """Whether the engine's max pool computes ``module`` (torch's defaults but the geometry)."""
    return (
        type(module) is nn.MaxPool2d and module.dilation in (1, (1, 1))
        and not module.ceil_mode and not module.return_indices
    )  # fmt: skip


def _pool_graph(gm: fx.GraphModule) -> list[str]:
    """Replace each max pool the engine computes by an :class:`EngineMaxPool2d`, taking the
    clamp before it (ReLU / ReLU6 / Hardtanh) when the pool alone reads it; their names
    (``clamp+pool`` for those)."""
    modules = dict(gm.named_modules())
    done: list[str] = []
    for node in list(gm.graph.nodes):
        pool = modules.get(str(node.target)) if node.op == "call_module" else None
        if not _engine_pool(pool) or len(node.args) != 1 or node.kwargs:
            continue
        assert isinstance(pool, nn.MaxPool2d)
        act = node.args[0]
        bounds = _clamp_bounds(act, modules) if isinstance(act, fx.Node) else None
        name = str(node.target)
        source = act.args[0] if isinstance(act, fx.Node) and act.args else None
        only_pool = isinstance(act, fx.Node) and list(act.users) == [node]
        if isinstance(source, fx.Node) and bounds is not None and only_pool:
            assert isinstance(act, fx.Node)
            node.replace_input_with(act, source)
            gm.graph.erase_node(act)
            name = f"{act.target if act.op == 'call_module' else act.name}+{name}"
        else:
            bounds = None
        gm.set_submodule(str(node.target), EngineMaxPool2d(pool, bounds))
        done.append(name)
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return done


# One trace at a time in the process: a second tracer's patch of nn.Module would route the
# first trace's module calls through the second tracer.
_TRACE_LOCK = threading.Lock()


class _LayerLeafTracer(fx.Tracer):
    """fx tracer that keeps the wrapped layers as single calls (their forward branches on the
    mode and would otherwise be traced into the torch simulation).

    While it traces, fx patches ``nn.Module.__call__`` and ``__getattr__`` for the whole
    process: a forward on another thread (the app measures and traces at once) comes through
    this tracer too, and runs untraced, as if no trace were on."""

    _tracing_thread: int | None = None  # the thread inside trace()

    def trace(self, root: Any, concrete_args: dict[str, Any] | None = None) -> fx.Graph:
        self._tracing_thread = threading.get_ident()
        return super().trace(root, concrete_args)

    def _other_thread(self) -> bool:
        return threading.get_ident() != self._tracing_thread

    def call_module(
        self, m: nn.Module, forward: Callable[..., Any], args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:  # fmt: skip
        if self._other_thread():
            return forward(*args, **kwargs)
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict[str, Any]) -> Any:
        if self._other_thread():
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

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
        module = modules.get(str(node.target))
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


_ADD_FUNCTIONS: set[Callable[..., Any]] = {operator.add, operator.iadd, torch.add}


def _shortcut_of(add: fx.Node, value: fx.Node) -> fx.Node | None:
    """The other operand of ``add`` if it is a plain two-tensor addition with ``value``."""
    if add.op != "call_function" or add.target not in _ADD_FUNCTIONS or add.kwargs:
        return None
    if len(add.args) != 2 or value not in add.args:
        return None
    other = add.args[1] if add.args[0] is value else add.args[0]
    return other if isinstance(other, fx.Node) and other is not value else None


@dataclass
class _Chain:
    """One fusable ``XNOR conv [-> BatchNorm2d] [-> add] [-> clamp]`` chain of graph nodes."""

    nodes: list[fx.Node]  # in graph order; the last one's value is the chain's output
    conv: BinConv2d
    bn: nn.BatchNorm2d | None = None
    shortcut: fx.Node | None = None
    bounds: tuple[float, float] | None = None

    @property
    def name(self) -> str:
        return "+".join(str(n.target) if n.op == "call_module" else n.name for n in self.nodes)


def _chain_at(node: fx.Node, modules: dict[str, nn.Module]) -> _Chain | None:
    """The chain that starts at ``node``, or None. Each link is the previous value's one user:
    the BatchNorm, then the add, then the clamp; a chain without a BatchNorm needs an add or a
    clamp (a bare XNOR conv is already one engine call)."""
    conv = modules.get(str(node.target)) if node.op == "call_module" else None
    if not isinstance(conv, BinConv2d) or not _fusable_conv(conv):
        return None
    chain = _Chain([node], conv)
    bn_node = _single_user(node)
    bn = None if bn_node is None else _batchnorm_of(bn_node, node, modules, conv.out_channels)
    if bn_node is not None and bn is not None:
        chain.nodes.append(bn_node)
        chain.bn = bn
    add_node = _single_user(chain.nodes[-1])
    shortcut = None if add_node is None else _shortcut_of(add_node, chain.nodes[-1])
    if add_node is not None and shortcut is not None:
        chain.nodes.append(add_node)
        chain.shortcut = shortcut
    act_node = _single_user(chain.nodes[-1])
    bounds = None if act_node is None else _clamp_bounds(act_node, modules)
    if act_node is not None and bounds is not None:
        chain.nodes.append(act_node)
        chain.bounds = bounds
    return chain if len(chain.nodes) > 1 else None


def _batchnorm_of(
    bn_node: fx.Node, value: fx.Node, modules: dict[str, nn.Module], channels: int
) -> nn.BatchNorm2d | None:
    """The foldable eval BatchNorm2d that ``bn_node`` applies to ``value``, else None."""
    if bn_node.op != "call_module" or bn_node.args[:1] != (value,):
        return None
    bn = modules.get(str(bn_node.target))
    return bn if isinstance(bn, nn.BatchNorm2d) and _fusable_bn(bn, channels) else None


def _float_conv_bn(node: fx.Node, modules: dict[str, nn.Module]) -> fx.Node | None:
    """The BatchNorm node after a float conv node (its one user), or None."""
    conv = modules.get(str(node.target)) if node.op == "call_module" else None
    if type(conv) is not nn.Conv2d and not (
        isinstance(conv, BinConv2d) and conv.config.mode is Mode.FLOAT
    ):
        return None
    bn_node = _single_user(node)
    if bn_node is None or _batchnorm_of(bn_node, node, modules, conv.out_channels) is None:
        return None
    return bn_node


def _fold_float_conv(gm: fx.GraphModule, node: fx.Node, bn_node: fx.Node,
                     modules: dict[str, nn.Module]) -> None:  # fmt: skip
    """Fold the eval BatchNorm ``bn_node`` into the float conv ``node`` (a new weight)."""
    conv, bn = modules[str(node.target)], modules[str(bn_node.target)]
    assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
    with torch.no_grad():
        gm.add_submodule(str(node.target), fuse_conv_bn_eval(conv, bn))
    bn_node.replace_all_uses_with(node)
    gm.graph.erase_node(bn_node)


def _fuse_graph(gm: fx.GraphModule) -> list[str]:
    """Replace each chain of ``gm`` by one :class:`FusedXnorConv` and fold each BatchNorm after
    a float conv into it (``torch.nn.utils.fusion.fuse_conv_bn_eval``); returns their names."""
    modules = dict(gm.named_modules())
    fused: list[str] = []
    for node in list(gm.graph.nodes):
        bn_node = _float_conv_bn(node, modules)
        if bn_node is not None:
            fused.append(f"{node.target}+{bn_node.target}")
            _fold_float_conv(gm, node, bn_node, modules)
            continue
        chain = _chain_at(node, modules)
        if chain is None:
            continue
        target = chain.name.replace(".", "_").replace("+", "__")
        gm.add_submodule(target, FusedXnorConv(chain.conv, chain.bn, chain.bounds))
        args = (node.args[0],) if chain.shortcut is None else (node.args[0], chain.shortcut)
        with gm.graph.inserting_after(chain.nodes[-1]):
            new = gm.graph.call_module(target, args)
        chain.nodes[-1].replace_all_uses_with(new)
        for dead in reversed(chain.nodes):
            gm.graph.erase_node(dead)
        fused.append(chain.name)
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return fused


def _prologue_conv(gm: fx.GraphModule, value: fx.Node,
                   modules: dict[str, nn.Module]) -> FusedXnorConv | None:  # fmt: skip
    """The XNOR conv that is ``value``'s only reader, through its input only (not as its
    shortcut), as a :class:`FusedXnorConv` (a plain fusable conv is made one in place), or None."""
    user = _single_user(value)
    if user is None or user.op != "call_module" or user.kwargs or user.args[:1] != (value,):
        return None
    if value in user.args[1:]:
        return None
    module = modules.get(str(user.target))
    if isinstance(module, FusedXnorConv):
        return module if module.prologue is None else None
    if not _fusable_conv(module) or len(user.args) != 1:
        return None
    assert isinstance(module, BinConv2d)
    fused = FusedXnorConv(module, None, None)
    gm.add_submodule(str(user.target), fused)
    modules[str(user.target)] = fused
    return fused


def _affine_graph(gm: fx.GraphModule) -> tuple[list[str], list[str]]:
    """Make each eval BatchNorm2d left in ``gm`` (and the clamp after it, when it is the
    BatchNorm's one user) the prologue of the XNOR conv that alone reads it, else one
    :class:`AffineClamp`; returns the names of both kinds."""
    modules = dict(gm.named_modules())
    done: list[str] = []
    prologues: list[str] = []
    for node in list(gm.graph.nodes):
        bn = modules.get(str(node.target)) if node.op == "call_module" else None
        if not isinstance(bn, nn.BatchNorm2d) or len(node.args) != 1 or node.kwargs:
            continue
        if not _fusable_bn(bn, bn.num_features):
            continue
        nodes = [node]
        act = _single_user(node)
        bounds = None if act is None else _clamp_bounds(act, modules)
        if act is not None and bounds is not None:
            nodes.append(act)
        name = "+".join(str(n.target) if n.op == "call_module" else n.name for n in nodes)
        conv = _prologue_conv(gm, nodes[-1], modules)
        if conv is not None:
            conv.prologue = Prologue(*batchnorm_affine(bn), bounds)
            conv_node = _single_user(nodes[-1])
            assert conv_node is not None
            nodes[-1].replace_all_uses_with(node.args[0])
            prologues.append(f"{name}>{conv_node.target}")
        else:
            target = name.replace(".", "_").replace("+", "__")
            gm.add_submodule(target, AffineClamp(bn, bounds))
            with gm.graph.inserting_after(nodes[-1]):
                new = gm.graph.call_module(target, node.args)
            nodes[-1].replace_all_uses_with(new)
            done.append(name)
        for dead in reversed(nodes):
            gm.graph.erase_node(dead)
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return done, prologues


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


def _channels_last_graph(gm: fx.GraphModule) -> None:
    """Put the first input in channels_last memory inside the graph (:class:`ChannelsLastInput`),
    where copies and pickles keep it: a GraphModule copy drops forward hooks."""
    inputs = [node for node in gm.graph.nodes if node.op == "placeholder"]
    if not inputs:
        return
    gm.add_submodule("channels_last_input", ChannelsLastInput())
    with gm.graph.inserting_after(inputs[-1]):
        converted = gm.graph.call_module("channels_last_input", (inputs[0],))
    inputs[0].replace_all_uses_with(converted, delete_user_cb=lambda user: user is not converted)
    gm.graph.lint()
    gm.recompile()


# GraphModule's copies restore the attributes named in its meta under this key.
_PRESERVED = "_user_preserved_attributes"


def deploy_report(model: nn.Module) -> DeployReport | None:
    """The :class:`DeployReport` of a model :func:`deploy` returned, else None."""
    report = vars(model).get("deploy_report")
    return report if isinstance(report, DeployReport) else None


def deploy(
    model: nn.Module, fuse: bool = True, bit_outputs: bool = False, chain: bool = True
) -> nn.Module:
    """``model`` (binarized with ``binarize_model``, its modes as set) prepared for inference.

    Returns a copy in eval mode whose wrapped layers run in the native engine with their
    weights packed now, whose 4-D input is put in channels_last memory when it has XNOR convs,
    and (``fuse``) whose ``XNOR conv [-> BatchNorm2d] [-> + shortcut] [-> ReLU / Hardtanh]``
    chains are single fused engine calls, each BatchNorm (and clamp) that only an XNOR conv
    reads that conv's prologue, the other BatchNorms multiply-adds and its max pools engine
    calls (module doc; a model fx cannot trace stays unfused; its ``deploy_report``, a
    :class:`DeployReport`, says which happened). With ``bit_outputs`` a fused conv whose
    output only another fused conv reads hands it its packed input instead of floats (pass 4
    of the module doc); off by default, as on the CPUs we measured it gains nothing (the emit
    costs what the reader's pack pass saved; benchmarks/RESULTS.md). With ``chain`` (and
    without ``bit_outputs``) each run of fused convs that only feed each other is one engine
    call (pass 5).

    ``model`` itself is not modified. The copy shares ``model``'s parameters and buffers, but
    the packed and fused weights are a snapshot: deploy again after changing weights or modes.
    Run it under ``torch.no_grad()`` (or inference mode): with autograd on, the unfused wrapped
    layers use the torch simulation, while the fused chains always run in the engine (whose
    outputs carry no gradient). Without the native module the fused chains run in the engine's
    reference (``xnorlab.engine.reference``).
    """
    prepared = _shared_copy(model).eval()
    _prepare_layers(prepared)
    report = DeployReport()
    if not fuse:
        report.reason = "fusion switched off"
    elif not _has_xnor_conv(prepared):
        report.reason = "no layer is an XNOR conv (nothing runs fused)"
    else:
        try:
            with _TRACE_LOCK:
                graph = _LayerLeafTracer().trace(prepared)
        except Exception as exc:  # fx refuses dynamic control flow in many ways
            report.reason = f"torch.fx could not trace the model ({type(exc).__name__}: {exc})"
        else:
            report.traced = True
            gm = fx.GraphModule(prepared, graph, type(prepared).__name__)
            report.fused = _fuse_graph(gm)
            report.affine, report.prologues = _affine_graph(gm)
            report.pools = _pool_graph(gm)
            if bit_outputs:
                report.bit_outputs = _bits_graph(gm)
            elif chain:
                report.chains, report.chained_convs = _chain_graph(gm)
            if _has_xnor_conv(model):
                _channels_last_graph(gm)
            gm.meta[_PRESERVED] = {"deploy_report": report}
            prepared = gm
    if _has_xnor_conv(model) and not report.traced:
        prepared.register_forward_pre_hook(channels_last_hook)
    vars(prepared)["deploy_report"] = report  # a plain attribute (not a module or tensor)
    return prepared


__all__ = ["DeployReport", "deploy", "deploy_report"]
