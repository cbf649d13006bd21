"""Enumerations that name every choice of the binarization math.

They are ``str`` enums so that they serialise to JSON, CLI flags and Qt combo boxes as their
plain values ("xnor", "kmap", ...).
"""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

from xnorlab.common.errors import quoted

_E = TypeVar("_E", bound="StrChoice")


class StrChoice(str, Enum):
    """A string enum: JSON, CLI flags and combo boxes see its plain value."""

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def parse(cls: type[_E], value: str | StrChoice) -> _E:
        """Return the member for ``value`` (case-insensitive), or raise ``ValueError``."""
        if isinstance(value, cls):
            return value
        text = str(value).strip().lower()
        for member in cls:
            if member.value == text:
                return member
        choices = ", ".join(m.value for m in cls)
        raise ValueError(f"unknown {cls.__name__} {quoted(value)} (expected one of: {choices})")


class Mode(StrChoice):
    """How a conv/linear layer computes.

    FLOAT: the original layer. BWN: binary weights ``alpha * sign(W)``, float inputs.
    XNOR: binary weights and binary inputs ``sign(I)``, rescaled by alpha and an input scale.
    """

    FLOAT = "float"
    BWN = "bwn"
    XNOR = "xnor"


class InputScaling(StrChoice):
    """The input scale of an XNOR layer (paper section 3.2).

    KMAP: the paper's K map (box filter over mean_c |I|). SCALAR: one beta per sample
    (mean |I| over the whole input). NONE: no input scale.
    """

    KMAP = "kmap"
    SCALAR = "scalar"
    NONE = "none"


class PadMode(StrChoice):
    """What the padded border of a binary input holds.

    ZERO: padded taps contribute 0 (PyTorch's zero padding of sign(I)); the default for models
    trained in PyTorch. ONE: padded taps are +1 (what a bit-packed kernel gets for free when it
    pads with bit 0), as in Larq Compute Engine.
    """

    ZERO = "zero"
    ONE = "one"


class WeightGrad(StrChoice):
    """Backward rule of the BWN weight approximation ``W~ = alpha * sign(W)``.

    PAPER: eq. 5, dC/dW = dC/dW~ * (1/n + alpha * 1{|W| <= clip}). STE: dC/dW = dC/dW~ *
    1{|W| <= clip} (the common simplification).
    """

    PAPER = "paper"
    STE = "ste"


class Backend(StrChoice):
    """Where an XNOR layer runs at inference: simulated in torch or in the native engine."""

    TORCH = "torch"
    NATIVE = "native"
