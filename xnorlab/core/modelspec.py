"""One model-spec string used everywhere (CLI, GUI, reports).

Accepted now: a torchvision architecture name (``resnet18``), random init.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from xnorlab.core.zoo import build_torchvision, torchvision_input_shape


@dataclass
class LoadedModel:
    """A model with what is needed to feed it."""

    spec: str
    model: nn.Module
    input_shape: tuple[int, int, int]  # (C, H, W) of one input
    class_names: list[str] = field(default_factory=list)


def load_model_spec(spec: str) -> LoadedModel:
    """Load the model a spec string names; raises ``XnorlabError`` with a clear message."""
    name = spec.strip()
    model = build_torchvision(name)
    model.eval()
    return LoadedModel(spec=spec, model=model, input_shape=torchvision_input_shape(name))
