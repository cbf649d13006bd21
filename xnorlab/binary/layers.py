"""Conv2d / Linear wrappers whose mode (float, BWN, XNOR) can be switched at any time.

A wrapper shares the *same* ``weight`` and ``bias`` Parameter objects as the float layer it
wraps, so the real-valued weights are kept and updated by the optimizer in every mode
(the paper's training scheme), ``state_dict`` keys are unchanged, and switching back to float
loses nothing. The wrappers subclass ``nn.Conv2d`` / ``nn.Linear`` so ``isinstance`` checks in
user code keep working.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xnorlab.binary.binarize import binarize_weight, xnor_conv2d, xnor_linear
from xnorlab.binary.modes import Backend, InputScaling, Mode, PadMode, WeightGrad


@dataclass(frozen=True)
class LayerConfig:
    """Everything that decides how a wrapped layer computes (besides its weights)."""

    mode: Mode = Mode.FLOAT
    scaling: InputScaling = InputScaling.KMAP
    pad_mode: PadMode = PadMode.ZERO
    weight_grad: WeightGrad = WeightGrad.PAPER
    clip: float = 1.0
    backend: Backend = Backend.TORCH

    @classmethod
    def create(cls, **fields: Any) -> LayerConfig:
        """Build a config from plain strings/values, validating every field."""
        return cls().updated(**fields)

    def updated(self, **fields: Any) -> LayerConfig:
        """Return a copy with ``fields`` changed (strings are parsed to the enums)."""
        parsers = {
            "mode": Mode.parse,
            "scaling": InputScaling.parse,
            "pad_mode": PadMode.parse,
            "weight_grad": WeightGrad.parse,
            "backend": Backend.parse,
        }
        clean: dict[str, Any] = {}
        for key, value in fields.items():
            if key == "clip":
                clip = float(value)
                if not clip > 0:
                    raise ValueError(f"clip must be > 0, got {value!r}")
                clean[key] = clip
            elif key in parsers:
                clean[key] = parsers[key](value)
            else:
                raise ValueError(f"unknown layer setting {key!r}")
        return replace(self, **clean)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able dict (enums as their string values)."""
        return {k: (str(v) if not isinstance(v, float) else v) for k, v in asdict(self).items()}


NativeForward = Callable[["BinConv2d | BinLinear", Tensor], "Tensor | None"]
"""Runs one wrapped layer's inference natively, or returns None to use the torch simulation."""

# The engine sits above this room, so the layers do not import it: ``xnorlab.runtime``
# registers the one function that decides whether and how a layer runs natively.
_native_forward: NativeForward | None = None


def register_native_forward(forward: NativeForward | None) -> None:
    """Install the function that ``Backend.NATIVE`` layers call (None: always simulate)."""
    global _native_forward
    _native_forward = forward


class _BinarizableMixin:
    """Shared state of the wrappers: the config and the native-engine cache."""

    config: LayerConfig
    native_cache: Any

    @property
    def mode(self) -> Mode:
        return self.config.mode

    @mode.setter
    def mode(self, value: Mode | str) -> None:
        self.configure(mode=value)

    def configure(self, **fields: Any) -> None:
        """Change any of mode/scaling/pad_mode/weight_grad/clip/backend; validates first."""
        self.config = self.config.updated(**fields)

    def _run_native(self, x: Tensor) -> Tensor | None:
        """Run XNOR inference in the native engine when asked for and possible."""
        if self.config.backend is not Backend.NATIVE or torch.is_grad_enabled():
            return None
        if _native_forward is None:
            return None
        return _native_forward(cast("BinConv2d | BinLinear", self), x)


class BinConv2d(_BinarizableMixin, nn.Conv2d):
    """A Conv2d that computes in float, BWN or XNOR mode (see ``xnorlab.binary.binarize``)."""

    def __init__(self, conv: nn.Conv2d, config: LayerConfig | None = None) -> None:
        nn.Module.__init__(self)
        for attr in (
            "in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
            "groups", "padding_mode", "transposed", "output_padding",
            "_reversed_padding_repeated_twice",
        ):  # fmt: skip
            setattr(self, attr, getattr(conv, attr))
        self.weight = conv.weight
        if conv.bias is None:
            self.register_parameter("bias", None)
        else:
            self.bias = conv.bias
        self.config = config or LayerConfig()
        self.native_cache = None

    def forward(self, x: Tensor) -> Tensor:
        mode = self.config.mode
        if mode is not Mode.XNOR:
            weight = self.weight
            if mode is Mode.BWN:
                weight = binarize_weight(weight, self.config.weight_grad, self.config.clip)
            out: Tensor = self._conv_forward(x, weight, self.bias)
            return out
        native = self._run_native(x)
        if native is not None:
            return native
        padding: Any = self.padding
        if self.padding_mode != "zeros":
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        return xnor_conv2d(
            x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups,
            scaling=self.config.scaling, pad_mode=self.config.pad_mode,
            weight_grad=self.config.weight_grad, clip=self.config.clip,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return (
            f"{nn.Module.extra_repr(self)}, mode={self.config.mode}, scaling={self.config.scaling}"
        )


class BinLinear(_BinarizableMixin, nn.Linear):
    """A Linear layer that computes in float, BWN or XNOR mode."""

    def __init__(self, linear: nn.Linear, config: LayerConfig | None = None) -> None:
        nn.Module.__init__(self)
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.weight = linear.weight
        if linear.bias is None:
            self.register_parameter("bias", None)
        else:
            self.bias = linear.bias
        self.config = config or LayerConfig()
        self.native_cache = None

    def forward(self, x: Tensor) -> Tensor:
        mode = self.config.mode
        if mode is Mode.FLOAT:
            return F.linear(x, self.weight, self.bias)
        if mode is Mode.BWN:
            native = self._run_native(x)
            if native is not None:
                return native
            weight = binarize_weight(self.weight, self.config.weight_grad, self.config.clip)
            return F.linear(x, weight, self.bias)
        native = self._run_native(x)
        if native is not None:
            return native
        return xnor_linear(
            x, self.weight, self.bias, scaling=self.config.scaling,
            weight_grad=self.config.weight_grad, clip=self.config.clip,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return (
            f"{nn.Module.extra_repr(self)}, mode={self.config.mode}, scaling={self.config.scaling}"
        )


BinarizableLayer = BinConv2d | BinLinear
