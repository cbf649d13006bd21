"""Inference-only layers that hold the engine's packed 1-bit weights instead of float weights.

They are what a loaded ``.xnor`` file (``xnorlab.models.xnor_file``) is made of. Each layer holds
one engine packed weight (``PackedConv2dWeight`` / ``PackedLinearWeight``), built with
``from_state`` straight from the stored 64-bit words: bits are never unpacked to floats and
packed again.

Routes (the ``route`` attribute, also in ``repr``):

* XNOR conv (groups 1, ``padding_mode='zeros'``, numeric padding), XNOR linear, BWN linear: the
  engine (``xnorlab.engine``) runs the packed weight.
* BWN conv (the engine has no BWN conv kernel) and XNOR convs the engine cannot run (grouped,
  non-zero ``padding_mode``, ``'same'`` padding): ``alpha * sign`` is derived from the words on
  first use and kept (a float tensor of the weight's size), then run with ``F.conv2d`` or the
  torch simulation of ``xnorlab.binary.binarize``.

Copies (``copy.deepcopy``, pickle) carry the packed weight as its plain ``to_state()`` tensors
and rebuild it with ``from_state``: the engine's per-call caches (native handles, addresses)
and the derived float weight stay behind and are rebuilt on first use.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from xnorlab import engine
from xnorlab.binary.binarize import xnor_conv2d
from xnorlab.binary.layers import LayerConfig
from xnorlab.binary.modes import Mode
from xnorlab.engine import PackedConv2dWeight, PackedLinearWeight

PackedWeight = PackedConv2dWeight | PackedLinearWeight


def engine_route() -> str:
    """``"engine (native avx512)"``, or ``"engine (reference reference)"`` without the build."""
    info = engine.info()
    return f"engine ({info.get('backend', '?')} {info.get('isa', '')})".replace(" )", ")")


class _PackedBase(nn.Module):
    """The packed weight, the layer config and the lazily derived ``alpha * sign``."""

    kind = ""
    packed: PackedWeight

    def __init__(self, packed: PackedWeight, config: LayerConfig) -> None:
        super().__init__()
        if config.mode is Mode.FLOAT:
            raise ValueError("a packed layer must be BWN or XNOR")
        self.packed = packed
        self.config = config
        self.route = "torch"
        self._float_weight: Tensor | None = None

    @property
    def mode(self) -> Mode:
        return self.config.mode

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """``(C_out, C_in, kh, kw)`` of a conv, ``(out_features, in_features)`` of a linear."""
        if isinstance(self.packed, PackedConv2dWeight):
            kh, kw = self.packed.kernel_size
            return (self.packed.out_channels, self.packed.in_channels, kh, kw)
        return (self.packed.out_channels, self.packed.in_channels)

    @property
    def alpha(self) -> Tensor:
        """``alpha_c = mean |W_c|`` per output channel, float32."""
        return self.packed.alpha

    @property
    def bias(self) -> Tensor | None:
        return self.packed.bias

    def float_weight(self) -> Tensor:
        """``alpha * sign`` as float32 of ``weight_shape``, derived once from the packed words."""
        if self._float_weight is None:
            signs = self.packed.signs().reshape(self.weight_shape)
            self._float_weight = self.alpha.reshape((-1,) + (1,) * (signs.dim() - 1)) * signs
        return self._float_weight

    def __getstate__(self) -> dict[str, Any]:
        """Plain tensors only: the engine object and the float weight are rebuilt on use."""
        state: dict[str, Any] = super().__getstate__()  # type: ignore[no-untyped-call]
        return {**state, "packed": self.packed.to_state(), "_float_weight": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        module_state = {k: v for k, v in state.items() if k != "packed"}
        super().__setstate__(module_state)  # type: ignore[no-untyped-call]
        weight_type = PackedConv2dWeight if self.kind == "conv2d" else PackedLinearWeight
        self.packed = weight_type.from_state(state["packed"])

    def extra_repr(self) -> str:
        shape = "x".join(map(str, self.weight_shape))
        return f"{shape}, mode={self.config.mode}, scaling={self.config.scaling}, via={self.route}"


class PackedConv2d(_PackedBase):
    """A frozen BWN/XNOR conv of a packed weight (see the module docstring for routes)."""

    kind = "conv2d"
    packed: PackedConv2dWeight

    def __init__(
        self, packed: PackedConv2dWeight, config: LayerConfig, geometry: dict[str, Any]
    ) -> None:
        super().__init__(packed, config)
        self.stride = tuple(geometry["stride"])
        self.padding: Any = geometry["padding"]
        if isinstance(self.padding, list):
            self.padding = tuple(self.padding)
        self.dilation = tuple(geometry["dilation"])
        self.groups = int(geometry["groups"])
        self.padding_mode = str(geometry["padding_mode"])
        self.on_engine = (
            config.mode is Mode.XNOR and self.groups == 1 and self.padding_mode == "zeros"
            and not isinstance(self.padding, str)
        )  # fmt: skip
        if self.on_engine:
            self.route = engine_route()
        elif config.mode is Mode.BWN:
            self.route = "torch (BWN conv has no native kernel: alpha*sign derived once)"
        else:
            self.route = "torch simulation"

    def forward(self, x: Tensor) -> Tensor:
        if self.on_engine:
            return engine.xnor_conv2d(
                x, self.packed, None, self.stride, self.padding, self.dilation,
                pad_mode=self.config.pad_mode, scaling=self.config.scaling,
            )  # fmt: skip
        padding: Any = self.padding
        if self.padding_mode != "zeros":
            pad_h, pad_w = (padding, padding) if isinstance(padding, int) else padding
            x = F.pad(x, (pad_w, pad_w, pad_h, pad_h), mode=self.padding_mode)
            padding = 0
        weight = self.float_weight()
        if self.config.mode is Mode.BWN:
            return F.conv2d(x, weight, self.bias, self.stride, padding, self.dilation, self.groups)
        return xnor_conv2d(
            x, weight, self.bias, self.stride, padding, self.dilation, self.groups,
            scaling=self.config.scaling, pad_mode=self.config.pad_mode,
        )  # fmt: skip


class PackedLinear(_PackedBase):
    """A frozen BWN/XNOR linear layer of a packed weight; the engine runs both modes."""

    kind = "linear"
    packed: PackedLinearWeight

    def __init__(self, packed: PackedLinearWeight, config: LayerConfig) -> None:
        super().__init__(packed, config)
        self.route = engine_route()

    def forward(self, x: Tensor) -> Tensor:
        if self.config.mode is Mode.BWN:
            return engine.bwn_linear(x, self.packed)
        return engine.xnor_linear(x, self.packed, scaling=self.config.scaling)


PackedLayer = PackedConv2d | PackedLinear


def has_packed_layers(model: nn.Module) -> bool:
    """True when ``model`` holds packed layers (it was loaded from a ``.xnor`` file)."""
    return any(isinstance(m, _PackedBase) for m in model.modules())
