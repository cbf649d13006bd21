"""What a conv call fuses around the engine's core: a :class:`Prologue` before the sign and an
:class:`Epilogue` after the output transform.

    v   = clamp(x * scale[c] + shift[c], lo, hi)                     (Prologue; else v = x)
    out = clamp(XNOR-conv(v) + residual, lo', hi')                   (Epilogue; else the conv)

The prologue is an eval BatchNorm and the clamp after it (the XNOR-Net block order puts them
right before the binary conv); the engine applies it to each pixel chunk just before packing,
so the normalized tensor is never written. The epilogue adds a shortcut and clamps each output
tile while it is in cache. Both keep NaN as NaN, as ``torch.clamp`` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from xnorlab.engine.errors import KernelInputError, KernelTypeError


def numpy_view(x: Tensor) -> Any:
    """A numpy view of the CPU tensor ``x``; the native call holds it (and so ``x``) while it
    runs. Asked first, not caught: ``numpy()`` of a tensor that requires grad raises a C++
    exception inside torch, which AddressSanitizer builds cannot unwind."""
    return x.detach().numpy() if x.requires_grad else x.numpy()


def checked_bounds(bounds: tuple[float, float] | None, what: str) -> tuple[float, float] | None:
    """``bounds`` as two floats with ``lo <= hi`` (None stays None)."""
    if bounds is None:
        return None
    try:
        lo, hi = (float(v) for v in bounds)
    except (TypeError, ValueError):
        raise KernelInputError(f"{what} must be two numbers (lo, hi), got {bounds!r}") from None
    if not lo <= hi:
        raise KernelInputError(f"{what} must be (lo, hi) with lo <= hi, got {bounds!r}")
    return (lo, hi)


@dataclass(frozen=True)
class Epilogue:
    """What a conv call applies to its output in the engine: ``clamp(out + residual, lo, hi)``.

    ``residual``: a float tensor of the output's shape (channels_last memory avoids a copy);
    ``clamp``: ``(lo, hi)`` bounds, ``lo <= hi`` (``(0, inf)`` is ReLU). NaN stays NaN.
    """

    residual: Tensor | None = None
    clamp: tuple[float, float] | None = None

    def residual_array(self, out_shape: tuple[int, ...]) -> Any:
        """The residual as a float32 NHWC numpy view (a copy only if in another layout)."""
        residual = self.residual
        if residual is None:
            return None
        if not isinstance(residual, Tensor) or not residual.is_floating_point():
            raise KernelTypeError("residual must be a float tensor")
        if residual.device.type != "cpu" or tuple(residual.shape) != tuple(out_shape):
            raise KernelInputError(
                f"residual must be a CPU tensor of the output's shape {tuple(out_shape)}, "
                f"got {tuple(residual.shape)}"
            )
        if residual.dtype is not torch.float32 or not residual.is_contiguous(
            memory_format=torch.channels_last
        ):
            residual = residual.to(torch.float32).contiguous(memory_format=torch.channels_last)
        return numpy_view(residual)

    def bounds(self) -> tuple[float, float] | None:
        return checked_bounds(self.clamp, "clamp")

    def reference(self, out: Tensor) -> Tensor:
        """The epilogue after a reference conv, in the same order as the engine's."""
        if self.residual is not None:
            self.residual_array(tuple(out.shape))  # the same checks as the engine's
            out = out + self.residual.to(out.dtype)
        bounds = self.bounds()
        return out if bounds is None else out.clamp(bounds[0], bounds[1])


NO_EPILOGUE = Epilogue()


@dataclass(frozen=True)
class Prologue:
    """What a conv call applies to its input before the sign: ``clamp(x * scale[c] +
    shift[c], lo, hi)`` per input channel ``c``; the K map (or beta) then averages the
    magnitude of that value, as it would of the tensor torch computes.

    ``scale``, ``shift``: 1-D float tensors of the input's channel count (checked and kept as
    float32 when the prologue is made); ``clamp``: ``(lo, hi)`` or None.
    """

    scale: Tensor
    shift: Tensor
    clamp: tuple[float, float] | None = None
    arrays: tuple[Any, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tensors = []
        for name, value in (("scale", self.scale), ("shift", self.shift)):
            if not isinstance(value, Tensor) or not value.is_floating_point():
                raise KernelTypeError(f"prologue {name} must be a float tensor")
            if value.dim() != 1 or value.device.type != "cpu":
                raise KernelInputError(f"prologue {name} must be a 1-D CPU tensor")
            tensors.append(value.detach().to(torch.float32).contiguous())
        if tensors[0].shape != tensors[1].shape:
            raise KernelInputError("prologue scale and shift must have the same length")
        object.__setattr__(self, "scale", tensors[0])
        object.__setattr__(self, "shift", tensors[1])
        object.__setattr__(self, "clamp", checked_bounds(self.clamp, "prologue clamp"))
        object.__setattr__(self, "arrays", (tensors[0].numpy(), tensors[1].numpy()))

    @property
    def channels(self) -> int:
        return int(self.scale.shape[0])

    def check(self, channels: int) -> None:
        """Refuse a prologue made for another channel count than the input's."""
        if channels != self.channels:
            raise KernelInputError(f"prologue has {self.channels} channels, the input {channels}")

    def reference(self, x: Tensor) -> Tensor:
        """The prologue in torch (for the reference conv), bit-equal to the engine's: a multiply
        and an add, each rounded (as the engine's build does, where ``addcmul`` may fuse
        them), then the clamp."""
        self.check(int(x.shape[1]))
        view = (1, -1, 1, 1)
        out = x.to(torch.float32) * self.scale.view(view) + self.shift.view(view)
        return out if self.clamp is None else out.clamp_(*self.clamp)


__all__ = ["NO_EPILOGUE", "Epilogue", "Prologue", "checked_bounds", "numpy_view"]
