"""A model whose layer sensitivities are known by construction, and its data.

``KnownModel`` is ``Linear(2, 2) -> Linear(2, 2)`` without biases on the items ``(1, -1)``
(class 0) and ``(-1, 1)`` (class 1), ``u = x[0] = -x[1]``:

* float: ``h = W0 x = (2u + v, u + 2v) = (u, -u)``; logits ``W1 h = (2u, -2u)``: every item right;
* layer ``1`` binarized (BWN or XNOR): ``W1`` is already ``+-1`` (alpha 1) and its input ``h`` is
  ``+-1`` (sign exact, input scale 1), so the output is unchanged: 100 %;
* layer ``0`` binarized: ``alpha * sign(W0)`` with ``sign(W0)`` all ones gives ``h = 1.5 (u + v)
  = (0, 0)``, logits ``(0, 0)``, argmax class 0: exactly the class-0 half right, 50 %.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

from xnorlab.binary.surgery import binarize_model
from xnorlab.data.sampling import NO_LABEL


def known_model() -> nn.Module:
    first, second = nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[2.0, 1.0], [1.0, 2.0]]))
        second.weight.copy_(torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))
    model = nn.Sequential(first, second)
    binarize_model(model, "float", warn_first_last=False)
    return model.eval()


def known_items(per_class: int = 100, labelled: bool = True) -> TensorDataset:
    """``per_class`` copies of each item, classes interleaved; ``labelled=False``: every label
    ``NO_LABEL``."""
    x = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).repeat(per_class, 1)
    y = torch.tensor([0, 1]).repeat(per_class)
    return TensorDataset(x, y if labelled else torch.full_like(y, NO_LABEL))
