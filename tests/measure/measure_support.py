"""A small binarizable net and a seeded data set shared by the measure tests."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

from xnorlab.binary.surgery import binarize_model


def small_net() -> nn.Sequential:
    """conv(1->8, 3x3, bias) -> BN(8) -> conv(8->16, 3x3, no bias) -> linear(16*4*4 -> 10)."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.Hardtanh(), nn.Conv2d(8, 16, 3, bias=False),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 10),
    )  # fmt: skip


def binarized(modes: str = "paper") -> nn.Sequential:
    model = small_net().eval()
    binarize_model(model, modes, warn_first_last=False)
    return model


def labelled_data(n: int = 64) -> TensorDataset:
    generator = torch.Generator().manual_seed(1)
    return TensorDataset(torch.randn(n, 1, 8, 8, generator=generator),
                         torch.randint(0, 10, (n,), generator=generator))  # fmt: skip
