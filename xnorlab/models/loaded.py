"""What loading a model spec gives: the model with what feeds and describes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from xnorlab.binary.modes import Mode
from xnorlab.data.images import Preprocessing


@dataclass
class LoadedModel:
    """A model with what is needed to feed it and to describe it."""

    spec: str
    model: nn.Module
    input_shape: tuple[int, int, int]  # (C, H, W) of one input
    class_names: list[str] = field(default_factory=list)
    preprocessing: Preprocessing | None = None
    modes: dict[str, Mode] = field(default_factory=dict)  # mode map stored with the weights
    default_data: str | None = None  # e.g. "mnist5k"
    card: dict[str, Any] = field(default_factory=dict)
    arch: str = ""
